"""MODEL_DIR/pixel_size.json: the microns per pixel of the images a model was trained on.

`cervical-tf convert --mpp UM` records it in the converted folder's dataset_stats.json; `train`
copies it here, beside the label map it copies, so the export's model card (`export/provenance.py`)
knows it even after the data folder moved; predict then reads slides at that pixel size
(`slides/plan.py`). The file: `{"pixel_size_um": float | null, "source": "<data>/dataset_stats.json"}`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfrecords_gen.atomic import atomic_path
from tfrecords_gen.stats import PIXEL_SIZE

PIXEL_SIZE_FILE = "pixel_size.json"


def record_pixel_size(data_folder: Path, model_dir: Path) -> None:
    """Write MODEL_DIR/pixel_size.json from DATA/dataset_stats.json (null when the data records none:
    converted without --mpp, by an older convert, or not by convert)."""
    source = Path(data_folder).absolute() / "dataset_stats.json"
    try:
        value = json.loads(source.read_text(encoding="utf-8")).get(PIXEL_SIZE)
    except (OSError, ValueError, AttributeError):
        value = None
    pixel_size_um = float(value) if isinstance(value, int | float) and value > 0 else None
    with atomic_path(Path(model_dir) / PIXEL_SIZE_FILE) as temporary:
        record = {PIXEL_SIZE: pixel_size_um, "source": str(source)}
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def load_pixel_size(model_dir: Path) -> tuple[float | None, str]:
    """(µm per pixel or None, a note saying where it came from or why it is unknown) of MODEL_DIR."""
    path = Path(model_dir) / PIXEL_SIZE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        value, source = record[PIXEL_SIZE], record["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, (
            f"unknown: {path} is missing or unreadable (trained before `convert --mpp` was recorded, or not "
            "by `cervical-tf train`); slides are read at full resolution"
        )
    if isinstance(value, int | float) and value > 0:
        return float(value), f"{value:g} µm per pixel, given to `cervical-tf convert --mpp` ({source})"
    return None, (
        f"unknown: the training data was converted without --mpp ({source}); slides are read at full "
        "resolution"
    )
