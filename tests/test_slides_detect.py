"""Slide detection finds the same cells as field detection: real CRIC fields laid out as a slide,
a stand-in model that finds dark blobs from the pixels (tests/blob_export.py), and the boxes of
each field, shifted into slide coordinates, compared with what the slide run found (within 2 px,
same counts), including the cells that tile seams cut. Then `cervical-tf predict` on slides."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from blob_export import HALF_BOX, write_blob_export
from PIL import Image
from slide_files import halve
from slide_mosaic import FIELD, MPP, build_mosaic, with_card

from cervical_tf import cli
from cervical_tf.export.model_card import MODEL_CARD
from cervical_tf.inference.detections import Detections
from cervical_tf.inference.predictor import Predictor
from cervical_tf.slides.detect import SlideOptions, detect_slide
from cervical_tf.slides.plan import plan_tiles

EVERYTHING = {"min_score": 0.0, "max_detections": 1000}


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_mosaic(tmp_path_factory.mktemp("slides"))


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in export with a model card: trained at MPP µm/px, input 384 px."""
    return with_card(write_blob_export(tmp_path_factory.mktemp("blob")), MPP, 384)


def field_reference(predictor: Predictor, mosaic: dict, downsample: int) -> list[tuple[np.ndarray, int]]:
    """Per field: (its boxes in slide level-0 px, its count), detected on the field alone."""
    references = []
    for field, (x, y) in zip(mosaic["fields"], mosaic["origins"], strict=True):
        pixels = field if downsample == 1 else halve(field)
        found = predictor.predict(pixels, "field", **EVERYTHING)
        boxes = found.boxes_px * downsample + np.array([x, y, x, y], dtype=np.float32)
        references.append((boxes, len(found)))
    return references


def assert_same_cells(slide: Detections, mosaic: dict, references: list[tuple[np.ndarray, int]]) -> None:
    """Each field's boxes and the slide's boxes centred on that field: same count, within 2 px."""
    width, height = FIELD
    centres = (slide.boxes_px[:, :2] + slide.boxes_px[:, 2:]) / 2
    matched = 0
    for (x, y), (expected, count) in zip(mosaic["origins"], references, strict=True):
        inside = (centres[:, 0] >= x) & (centres[:, 0] < x + width)
        inside &= (centres[:, 1] >= y) & (centres[:, 1] < y + height)
        # The field alone ends at its border: boxes there are clipped, on the slide they reach the glass.
        found = np.clip(slide.boxes_px[inside], [x, y, x, y], [x + width, y + height] * 2)
        assert len(found) == count, f"field at ({x}, {y}): slide found {len(found)}, the field {count}"
        distance = np.abs(found[:, None, :] - expected[None, :, :]).max(axis=2)
        assert (distance.min(axis=1) <= 2).all() and (distance.min(axis=0) <= 2).all()
        matched += count
    assert matched == len(slide) and matched > 40


def seam_cells(boxes_px: np.ndarray, level_size: tuple[int, int], scale: float, tile: int) -> int:
    """How many boxes (level px) a tile's inner edge cuts through."""
    tiles = plan_tiles(level_size, scale, tile, SlideOptions().overlap)
    edges_x = {t.x for t in tiles if t.x > 0} | {
        t.x + t.width for t in tiles if t.x + t.width < level_size[0]
    }
    edges_y = {t.y for t in tiles if t.y > 0} | {
        t.y + t.height for t in tiles if t.y + t.height < level_size[1]
    }
    cut = [
        any(x0 < edge < x1 for edge in edges_x) or any(y0 < edge < y1 for edge in edges_y)
        for x0, y0, x1, y1 in boxes_px
    ]
    return sum(cut)


def test_slide_finds_the_fields_cells_at_level_0(mosaic: dict, blob_model: Path, tmp_path: Path) -> None:
    predictor = Predictor.load(blob_model)
    references = field_reference(predictor, mosaic, downsample=1)

    result = detect_slide(predictor, mosaic["ome"], tmp_path, SlideOptions(**EVERYTHING))

    assert (result.plan.level, result.plan.scale, result.tile) == (0, 1.0, 384)
    assert result.tissue_tiles < result.tiles  # the empty glass on the right was never read
    assert_same_cells(result.detections, mosaic, references)
    slide_size = mosaic["pixels"].shape[1::-1]
    assert seam_cells(np.concatenate([boxes for boxes, _ in references]), slide_size, 1.0, 384) >= 20


def test_slide_at_half_the_resolution_reads_level_1(mosaic: dict, tmp_path: Path, blob_model: Path) -> None:
    export = with_card(shutil.copytree(blob_model, tmp_path / "export"), 2 * MPP, 256)
    predictor = Predictor.load(export)
    references = field_reference(predictor, mosaic, downsample=2)

    result = detect_slide(predictor, mosaic["generic"], tmp_path / "out", SlideOptions(**EVERYTHING))

    assert (result.plan.level, result.plan.downsample, result.plan.scale) == (1, 2.0, 1.0)
    assert "openslide.mpp-x/y" in result.plan.note
    assert_same_cells(result.detections, mosaic, references)
    level_1 = (mosaic["pixels"].shape[1] // 2, mosaic["pixels"].shape[0] // 2)
    level_1_boxes = np.concatenate([boxes for boxes, _ in references]) / 2
    assert seam_cells(level_1_boxes, level_1, 1.0, 256) >= 20


def test_slide_between_levels_is_resized_to_the_model_pixel_size(
    mosaic: dict, tmp_path: Path, blob_model: Path
) -> None:
    """At 1.5 x the slide's pixel size the tiles are resized (by 2/3); a field alone resized the same
    way is the reference. Resizing a tile is not resizing the whole field (the filter sees other
    pixels at the tile's edges), so boxes agree to 3 px for most cells, not all: this checks the scale
    and the coordinates on the way back, which a wrong mapping would miss by tens of pixels."""
    export = with_card(shutil.copytree(blob_model, tmp_path / "export"), 1.5 * MPP, 256)
    predictor = Predictor.load(export)
    width, height = FIELD

    result = detect_slide(predictor, mosaic["ome"], tmp_path / "out", SlideOptions(**EVERYTHING))

    assert (result.plan.level, result.plan.scale) == (0, pytest.approx(2 / 3))
    centres = (result.detections.boxes_px[:, :2] + result.detections.boxes_px[:, 2:]) / 2
    near, total, expected_total = 0, 0, 0
    for field, (x, y) in zip(mosaic["fields"], mosaic["origins"], strict=True):
        small = np.asarray(Image.fromarray(field).resize((512, 427), Image.BILINEAR))
        found_alone = predictor.predict(small, "field", **EVERYTHING)
        factor = np.array([width / 512, height / 427] * 2, dtype=np.float32)
        expected = found_alone.boxes_px * factor + np.array([x, y, x, y], dtype=np.float32)
        inside = (centres[:, 0] >= x) & (centres[:, 0] < x + width) & (centres[:, 1] >= y)
        inside &= centres[:, 1] < y + height
        found = np.clip(result.detections.boxes_px[inside], [x, y, x, y], [x + width, y + height] * 2)
        distance = np.abs(found[:, None, :] - expected[None, :, :]).max(axis=2)
        near += int((distance.min(axis=1) <= 3).sum())
        total += len(found)
        expected_total += len(expected)
    assert total > 40 and abs(total - expected_total) <= 0.1 * expected_total
    assert near >= 0.85 * total


def predict(model: Path, output: Path, *arguments: str) -> int:
    return cli.main(["predict", "--model", str(model), "--output", str(output), *arguments])


def test_predict_cli_writes_slide_outputs_reports_failures_and_resumes(
    mosaic: dict, blob_model: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    formats = shared_data / "wsi_formats"
    output = tmp_path / "results"
    arguments = (
        "--min-score",
        "0",
        str(mosaic["ome"]),
        str(formats / "unreadable.svs"),
        str(formats / "unopenable.tiff"),
    )

    assert predict(blob_model, output, *arguments) == 2  # two slides failed, the batch went on

    printed = capsys.readouterr()
    assert "unreadable.svs: cannot read level 0" in printed.err and "2 of 3 slide(s)" in printed.err
    with (output / "slides_failed.csv").open(encoding="utf-8") as handle:
        failed = list(csv.DictReader(handle))
    assert [Path(row["slide"]).name for row in failed] == ["unreadable.svs", "unopenable.tiff"]
    assert "Unsupported TIFF compression" in failed[1]["reason"]
    folder = output / "mosaic.ome"
    collection = json.loads((folder / "detections.geojson").read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection" and collection["model_card"]["pixel_size_um"] == MPP
    feature = collection["features"][0]
    assert feature["geometry"]["type"] == "Polygon" and len(feature["geometry"]["coordinates"][0]) == 5
    properties = feature["properties"]
    assert properties["objectType"] == "detection"
    assert (
        properties["classification"]["name"] in ("grey", "dark")
        and len(properties["classification"]["color"]) == 3
    )
    assert 0 < properties["measurements"]["score"] <= 1
    x0, y0 = feature["geometry"]["coordinates"][0][0]
    x1, y1 = feature["geometry"]["coordinates"][0][2]
    assert x1 - x0 == y1 - y0 == 2 * HALF_BOX + 1  # level-0 px: the model's box, not rescaled
    with (folder / "detections.csv").open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(collection["features"])
    assert (output / MODEL_CARD).is_file()

    log = folder / "tiles.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    log.write_text("".join(lines[:4]) + lines[4][:20], encoding="utf-8")  # stopped after 3 tiles
    assert predict(blob_model, output, "--min-score", "0", str(mosaic["ome"])) == 0

    assert "3 done by an earlier run" in capsys.readouterr().out
    assert json.loads((folder / "detections.geojson").read_text(encoding="utf-8")) == collection
