"""Write a converted data set: sharded TFRecords, label map, COCO ground truth, stats, manifest.

Everything is written into a hidden sibling folder and moved into place at the end, so an
interrupted run never leaves a half-written shard where training would pick it up. Each image
is encoded once (in parallel) and its tf.Example written to every shard it belongs to, which
matters for k-fold, where an image is in the training set of K-1 folds.
"""

from __future__ import annotations

import csv
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfrecords_gen.atomic import atomic_folder, atomic_path
from tfrecords_gen.coco_gt import coco_ground_truth, write_coco_ground_truth
from tfrecords_gen.encode import encode_image
from tfrecords_gen.label_map import write_label_map
from tfrecords_gen.parallel import map_in_order
from tfrecords_gen.records import ImageRecord, Problem
from tfrecords_gen.split import SPLITS, write_manifest
from tfrecords_gen.stats import dataset_stats, write_stats

# Shards of about this many source bytes: large enough to read fast, small enough to interleave.
SHARD_SOURCE_BYTES = 200 * 1024 * 1024
# A folder holding these is a previous conversion that may be replaced.
CONVERSION_MARKERS = ("dataset_stats.json", "label_map.pbtxt")
NOT_A_CONVERSION = (
    "exists and is not the output of an earlier `cervical-tf convert`; choose an empty or new --output folder"
)


@dataclass(frozen=True)
class View:
    """One complete converted folder: `subdir` ("" or "fold-N") and its split -> records."""

    subdir: str
    splits: dict[str, list[ImageRecord]]


@dataclass(frozen=True)
class WriteSummary:
    out_dir: Path
    files: list[Path]
    images: int


def views_for(records: Sequence[ImageRecord], assignment: dict[str, str]) -> list[View]:
    """One view for train/val/test splits; for k-fold, one view per fold (that fold is its val)."""
    by_split = _group_by_split(records, assignment)
    folds = sorted((name for name in by_split if name.startswith("fold-")), key=lambda name: int(name[5:]))
    if not folds:
        return [View("", {split: by_split[split] for split in SPLITS if by_split[split]})]
    views = []
    for fold in folds:
        train = [record for other in folds if other != fold for record in by_split[other]]
        splits = {"train": train, "val": by_split[fold], "test": by_split.get("test", [])}
        views.append(View(fold, {name: members for name, members in splits.items() if members}))
    return views


def _group_by_split(
    records: Sequence[ImageRecord], assignment: dict[str, str]
) -> dict[str, list[ImageRecord]]:
    by_split: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_split[assignment[record.name]].append(record)
    return by_split


def write_dataset(
    out_dir: Path,
    records: Sequence[ImageRecord],
    assignment: dict[str, str],
    label_map: dict[str, int],
    seed: int,
    rejected: Sequence[Problem] = (),
    workers: int | None = None,
    progress: bool = True,
    pixel_size_um: float | None = None,
) -> WriteSummary:
    """Write all outputs for `records` split by `assignment` into `out_dir` (replaced whole);
    `pixel_size_um` (µm per pixel of the images, or None) goes into every dataset_stats.json."""
    with atomic_folder(out_dir, _is_previous_conversion, NOT_A_CONVERSION) as staging:
        source_ids = {name: index for index, name in enumerate(sorted(r.name for r in records), start=1)}
        views = views_for(records, assignment)
        _write_shards(staging, records, views, source_ids, label_map, seed, workers, progress)
        write_manifest(staging / "splits.csv", records, assignment)
        if rejected:
            _write_rejected(staging / "rejected.csv", rejected)
        for view in views:
            folder = staging / view.subdir
            write_label_map(folder / "label_map.pbtxt", label_map)
            for split, members in view.splits.items():
                ground_truth = coco_ground_truth(members, source_ids, label_map)
                write_coco_ground_truth(folder / f"{split}_coco.json", ground_truth)
            write_stats(folder / "dataset_stats.json", dataset_stats(view.splits, pixel_size_um))
        if views[0].subdir:  # k-fold: the top folder describes the folds themselves
            write_label_map(staging / "label_map.pbtxt", label_map)
            stats = dataset_stats(_group_by_split(records, assignment), pixel_size_um)
            write_stats(staging / "dataset_stats.json", stats)
    files = sorted(path for path in out_dir.rglob("*") if path.is_file())
    return WriteSummary(out_dir, files, len(records))


def _write_shards(
    staging: Path,
    records: Sequence[ImageRecord],
    views: list[View],
    source_ids: dict[str, int],
    label_map: dict[str, int],
    seed: int,
    workers: int | None,
    progress: bool,
) -> None:
    import tensorflow as tf  # deferred: only writing needs it, and it takes seconds to import

    from tfrecords_gen.tf_example import build_example

    shard_paths: dict[str, list[Path]] = defaultdict(list)  # image name -> the shard files it goes to
    for view in views:
        (staging / view.subdir).mkdir(exist_ok=True)
        for split, members in view.splits.items():
            count = _shard_count(members)
            shuffled = sorted(members, key=lambda record: record.name)
            random.Random(seed).shuffle(shuffled)  # mix classes across shards
            for position, record in enumerate(shuffled):
                name = f"{split}-{position % count:05d}-of-{count:05d}.tfrecord"
                shard_paths[record.name].append(staging / view.subdir / name)
    writers = {path: tf.io.TFRecordWriter(str(path)) for paths in shard_paths.values() for path in paths}
    try:
        encoded_images = map_in_order(
            encode_image, [r.image_path for r in records], "encoding", workers, progress
        )
        for record, encoded in zip(records, encoded_images, strict=True):
            serialized = build_example(
                record, encoded, source_ids[record.name], label_map
            ).SerializeToString()
            for path in shard_paths[record.name]:
                writers[path].write(serialized)
    finally:
        for writer in writers.values():
            writer.close()


def _write_rejected(path: Path, problems: Sequence[Problem]) -> None:
    """rejected.csv: one row per item left out under --on-error skip (file, line, kind, message)."""
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(("file", "line", "kind", "message"))
        for problem in problems:
            writer.writerow((problem.origin.path, problem.origin.line or "", problem.kind, problem.message))


def _shard_count(records: Sequence[ImageRecord]) -> int:
    source_bytes = sum(record.image_path.stat().st_size for record in records)
    return max(1, min(len(records), math.ceil(source_bytes / SHARD_SOURCE_BYTES)))


def _is_previous_conversion(folder: Path) -> bool:
    """Only convert's own output may be replaced: any other folder may hold the user's files."""
    return all((folder / marker).exists() for marker in CONVERSION_MARKERS)
