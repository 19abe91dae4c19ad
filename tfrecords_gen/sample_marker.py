"""The marker `cervical-tf sample` leaves in its output, and how convert finds the images it covers.

A model trained on drawn cells must say so wherever it is used (the export's model card reads
dataset_stats.json's "synthetic_sample"), so the fact has to survive convert. The sample writes
SYNTHETIC_SAMPLE.json into its root, naming the class folders it drew; an image is synthetic when
it lies in one of those folders under a marker, whatever folder convert was pointed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.records import ImageRecord

SAMPLE_MARKER = "SYNTHETIC_SAMPLE.json"
GENERATOR = "cervical-tf sample"


def write_sample_marker(folder: Path, class_folders: Iterable[str], spec: dict) -> None:
    """FOLDER/SYNTHETIC_SAMPLE.json: which of its folders hold drawn images, and the spec that drew them."""
    marker = {
        "generator": GENERATOR,
        "note": "synthetic images drawn by a program: no real cell is in them",
        "folders": sorted(class_folders),
        "spec": spec,
    }
    (folder / SAMPLE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def synthetic_sample_stats(splits: Mapping[str, Sequence[ImageRecord]]) -> dict | None:
    """dataset_stats.json's "synthetic_sample": {"generator", "images": {split: synthetic images}},
    or None when no image of any split comes from a `cervical-tf sample` folder."""
    by_folder: dict[Path, bool] = {}  # one look per image folder, not per image

    def synthetic(record: ImageRecord) -> bool:
        folder = record.image_path.resolve().parent
        if folder not in by_folder:
            by_folder[folder] = _is_synthetic(folder)
        return by_folder[folder]

    counts = {split: sum(map(synthetic, records)) for split, records in splits.items() if records}
    if not any(counts.values()):
        return None
    return {"generator": GENERATOR, "images": counts}


def _is_synthetic(image_folder: Path) -> bool:
    """Whether `image_folder` is a class folder named by a marker in one of its ancestors."""
    for ancestor in image_folder.parents:
        marker = ancestor / SAMPLE_MARKER
        if marker.is_file():
            return image_folder.relative_to(ancestor).parts[0] in _marked_folders(marker)
    return False


def _marked_folders(marker: Path) -> set[str]:
    try:
        return set(json.loads(marker.read_text(encoding="utf-8"))["folders"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{marker}: not a marker `cervical-tf sample` wrote ({error}); generate the sample again"
        ) from error
