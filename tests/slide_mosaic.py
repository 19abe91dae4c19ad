"""Test slides from real cells, shared by the slide tests: four CRIC fields laid out 2 x 2 on glass
as pyramidal slides (OME-TIFF and generic tiled TIFF), and the stand-in model's export with a card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_export import fake_model_card
from slide_files import write_generic_tiff, write_ome_tiff

from cervical_tf.export.model_card import MODEL_CARD, ModelCard, write_model_card
from cervical_tf.images import load_image

MPP = 0.25  # µm per level-0 pixel of the test slides
FIELD = (768, 640)  # width, height of the crop taken from each CRIC field
GAP = 64  # glass around and between the fields (even: level 1 keeps the fields' 2 x 2 blocks)
GLASS_RIGHT = 640  # an empty strip of glass on the right, whose tiles the tissue mask skips


def build_mosaic(folder: Path) -> dict:
    """Four CRIC fields (crops) arranged 2 x 2 on glass: the pixels, each field and its top-left, and
    the slide written to `folder` as "ome" (mosaic.ome.tiff) and "generic" (mosaic.tiff). Skips the
    test when the shared real data is absent."""
    from shared_data import SHARED_DATA

    images = sorted((SHARED_DATA / "cric8" / "images").glob("*.png"))[:4]
    if len(images) < 4:
        pytest.skip(f"real data not present at {SHARED_DATA}")
    width, height = FIELD
    slide = np.full((3 * GAP + 2 * height, 3 * GAP + 2 * width + GLASS_RIGHT, 3), 255, dtype=np.uint8)
    fields, origins = [], []
    for index, path in enumerate(images):
        field = load_image(path)[:height, :width]
        x, y = GAP + (index % 2) * (width + GAP), GAP + (index // 2) * (height + GAP)
        slide[y : y + height, x : x + width] = field
        fields.append(field)
        origins.append((x, y))
    return {
        "pixels": slide,
        "fields": fields,
        "origins": origins,
        "ome": write_ome_tiff(folder / "mosaic.ome.tiff", slide, MPP),
        "generic": write_generic_tiff(folder / "mosaic.tiff", slide, MPP),
    }


def with_card(
    export_dir: Path, pixel_size_um: float | None, input_side: int, synthetic_sample: str = "none"
) -> Path:
    """EXPORT_DIR with a model card: trained at `pixel_size_um`, input `input_side` px square."""
    facts = fake_model_card(synthetic_sample) | {"pixel_size_um": pixel_size_um}
    facts["recipe"] = facts["recipe"] | {"input_size": [input_side, input_side, 3]}
    write_model_card(export_dir / MODEL_CARD, ModelCard(facts, export_dir / MODEL_CARD))
    return export_dir
