"""`cervical-tf convert` end to end: read -> validate -> split -> write."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.label_map import build_label_map, read_label_map
from tfrecords_gen.readers import READERS
from tfrecords_gen.records import Problem, ReaderInput
from tfrecords_gen.split import read_manifest, split_by_fractions, split_folds
from tfrecords_gen.validate import ValidationOptions, validate
from tfrecords_gen.writer import WriteSummary, write_dataset


@dataclass(frozen=True)
class ConvertRequest:
    """The options of `cervical-tf convert`, one field per flag."""

    format: str
    input: Path
    output: Path
    images: Path | None = None
    val: float = 0.15
    test: float = 0.15
    folds: int | None = None
    seed: int = 0
    splits: Path | None = None
    on_error: str = "fail"
    box_size: float = 100.0
    sipakmed_region: str = "cytoplasm"
    keep_negatives: bool = False
    label_map: Path | None = None
    group_pattern: re.Pattern[str] | None = None
    workers: int | None = None
    progress: bool = True
    mpp: float | None = None  # µm per pixel of the images, recorded in dataset_stats.json


@dataclass(frozen=True)
class ConvertOutcome:
    """Every problem found, and what was written (None when problems stopped the run)."""

    problems: list[Problem]
    written: WriteSummary | None


def convert(request: ConvertRequest) -> ConvertOutcome:
    if request.format not in READERS:
        raise DataError(f"--format {request.format!r}: expected one of {', '.join(READERS)}")
    if request.mpp is not None and not request.mpp > 0:
        raise DataError(f"--mpp must be a positive number of microns per pixel, got {request.mpp}")
    if not request.input.exists():
        raise DataError(f"--input {request.input}: no such file or folder")
    reader_input = ReaderInput(request.input, request.images, request.box_size, request.sipakmed_region)
    parsed = READERS[request.format](reader_input)
    fixed_label_map = read_label_map(request.label_map) if request.label_map else None
    options = ValidationOptions(
        keep_negatives=request.keep_negatives,
        known_labels=frozenset(fixed_label_map) if fixed_label_map else None,
        group_pattern=request.group_pattern,
    )
    validated = validate(parsed, options, request.workers, request.progress)
    if validated.fatal and request.on_error == "fail":
        return ConvertOutcome(validated.problems, None)
    records = validated.records
    if not records:
        raise DataError(f"{request.input}: no usable annotated image found")
    if request.splits:
        assignment = read_manifest(request.splits, records)
    elif request.folds:
        assignment = split_folds(records, request.folds, request.test, request.seed)
    else:
        assignment = split_by_fractions(records, request.val, request.test, request.seed)
    label_map = fixed_label_map or build_label_map(label for record in records for label in record.labels)
    written = write_dataset(
        request.output,
        records,
        assignment,
        label_map,
        request.seed,
        validated.fatal,
        request.workers,
        request.progress,
        request.mpp,
    )
    return ConvertOutcome(validated.problems, written)
