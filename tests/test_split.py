"""split: no image or group in two splits, class proportions kept, seeded, manifests reusable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.records import Box, ImageRecord
from tfrecords_gen.split import read_manifest, split_by_fractions, split_folds, write_manifest

CLASSES = ("NILM", "LSIL", "HSIL")


def make_records(images: int = 120, images_per_group: int = 3) -> list[ImageRecord]:
    """Images in groups (slides) of `images_per_group`; classes unbalanced 6:3:1 by slide."""
    records = []
    for index in range(images):
        group = index // images_per_group
        label = CLASSES[0] if group % 10 < 6 else CLASSES[1] if group % 10 < 9 else CLASSES[2]
        boxes = tuple(Box(label, 10.0 * k, 0, 10.0 * k + 8, 8) for k in range(1 + index % 3))
        records.append(
            ImageRecord(Path(f"/data/{index}.png"), f"{index}.png", 100, 100, f"slide{group}", boxes)
        )
    return records


def boxes_per_split(records: list[ImageRecord], assignment: dict[str, str]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for record in records:
        counts.setdefault(assignment[record.name], Counter()).update(record.labels)
    return counts


def test_split_keeps_every_group_in_one_split() -> None:
    records = make_records()
    assignment = split_by_fractions(records, val=0.15, test=0.15, seed=3)
    splits_of_group: dict[str, set[str]] = {}
    for record in records:
        splits_of_group.setdefault(record.group, set()).add(assignment[record.name])
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    assert set(assignment) == {record.name for record in records}
    assert set(assignment.values()) == {"train", "val", "test"}


def test_split_is_stratified_by_class() -> None:
    records = make_records(images=300)
    assignment = split_by_fractions(records, val=0.2, test=0.2, seed=0)
    counts = boxes_per_split(records, assignment)
    totals = Counter(label for record in records for label in record.labels)
    for split, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        for label in CLASSES:
            assert counts[split][label] / totals[label] == pytest.approx(share, abs=0.08), (split, label)


def test_split_is_reproducible_for_a_seed_and_changes_with_it() -> None:
    records = make_records()
    first = split_by_fractions(records, 0.15, 0.15, seed=1)
    assert first == split_by_fractions(records, 0.15, 0.15, seed=1)
    assert first != split_by_fractions(records, 0.15, 0.15, seed=2)


def test_split_zero_fractions_put_everything_in_train() -> None:
    records = make_records(images=9)
    assert set(split_by_fractions(records, 0, 0, seed=0).values()) == {"train"}


def test_split_every_requested_split_gets_a_group_even_when_tiny() -> None:
    records = make_records(images=3, images_per_group=1)
    assert sorted(split_by_fractions(records, 0.1, 0.1, seed=0).values()) == ["test", "train", "val"]
    with pytest.raises(DataError, match="cannot fill 3 splits"):
        split_by_fractions(records[:2], 0.1, 0.1, seed=0)


def test_split_rejects_fractions_that_do_not_fit() -> None:
    with pytest.raises(DataError, match="sum to less than 1"):
        split_by_fractions(make_records(), 0.6, 0.5, seed=0)


def test_split_folds_partition_groups_evenly() -> None:
    records = make_records(images=150)
    assignment = split_folds(records, folds=5, test=0.0, seed=0)
    images = Counter(assignment.values())
    assert set(images) == {f"fold-{index}" for index in range(1, 6)}
    assert max(images.values()) - min(images.values()) <= 9  # 150 images in groups of 3: about 30 each
    group_folds = {(record.group, assignment[record.name]) for record in records}
    assert len(group_folds) == len({record.group for record in records})


def test_split_manifest_round_trip_and_refusals(tmp_path: Path) -> None:
    records = make_records(images=30)
    assignment = split_by_fractions(records, 0.2, 0.2, seed=0)
    manifest = tmp_path / "splits.csv"
    write_manifest(manifest, records, assignment)
    assert manifest.read_text().splitlines()[0] == "image,group,split"
    assert read_manifest(manifest, records) == assignment
    with pytest.raises(DataError, match=r"1 image\(s\) missing from it"):
        read_manifest(manifest, [*records, ImageRecord(Path("/x.png"), "x.png", 10, 10, "x")])
    lines = manifest.read_text().splitlines()
    _, group, split = lines[1].split(",")
    other = "val" if split != "val" else "train"
    leaking = [*lines, f"extra.png,{group},{other}"]
    manifest.write_text("\n".join(leaking) + "\n")
    with pytest.raises(
        DataError, match=rf"splits.csv:{len(leaking)}: group '{group}' is in '{other}'.*leaks"
    ):
        read_manifest(manifest, records)


def test_split_manifest_refuses_a_current_group_it_puts_in_two_splits(tmp_path: Path) -> None:
    """A manifest written when every image was its own group, read once images are grouped by slide."""
    ungrouped = make_records(images=30, images_per_group=1)
    manifest = tmp_path / "splits.csv"
    assignment = split_by_fractions(ungrouped, 0.2, 0.2, seed=0)
    write_manifest(manifest, ungrouped, assignment)
    by_slide = make_records(images=30, images_per_group=3)
    straddling = next(
        group
        for group in sorted({record.group for record in by_slide})
        if len({assignment[record.name] for record in by_slide if record.group == group}) > 1
    )
    images = sorted(record.name for record in by_slide if record.group == straddling)
    with pytest.raises(DataError) as refusal:
        read_manifest(manifest, by_slide)
    message = str(refusal.value)
    assert f"group {straddling!r}" in message and all(image in message for image in images)
    assert str(manifest) in message
