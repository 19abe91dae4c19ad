"""Assign images to splits without leakage: whole groups, stratified by class, seeded.

A group (slide, patient, or the image itself) never straddles two splits. Groups are placed
greedily, rarest classes first, each into the split whose class quotas are furthest from being
met, the way iterative stratification does for multi-label data. scikit-learn's
StratifiedGroupKFold is not used because it stratifies one label per sample and only splits into
equal folds, while images here carry several classes and users ask for fractions such as 0.15.
"""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.atomic import atomic_path
from tfrecords_gen.records import ImageRecord

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("image", "group", "split")


def split_by_fractions(records: Sequence[ImageRecord], val: float, test: float, seed: int) -> dict[str, str]:
    """Image name -> "train" / "val" / "test" with about the given fractions of every class."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"--val {val} and --test {test}: expected fractions >= 0 that sum to less than 1")
    fractions = {"train": 1 - val - test, "val": val, "test": test}
    return _assign(records, {name: share for name, share in fractions.items() if share > 0}, seed)


def split_folds(records: Sequence[ImageRecord], folds: int, test: float, seed: int) -> dict[str, str]:
    """Image name -> "fold-1" ... "fold-K" (equal shares of the rest), or "test" when test > 0."""
    if folds < 2:
        raise DataError(f"--folds {folds}: expected at least 2 folds")
    if not 0 <= test < 1:
        raise DataError(f"--test {test}: expected a fraction in [0, 1)")
    shares = {fold_name(index): (1 - test) / folds for index in range(1, folds + 1)}
    if test > 0:
        shares["test"] = test
    return _assign(records, shares, seed)


def fold_name(index: int) -> str:
    return f"fold-{index}"


def _assign(records: Sequence[ImageRecord], shares: dict[str, float], seed: int) -> dict[str, str]:
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        groups[record.group].append(record)
    if len(groups) < len(shares):
        raise DataError(
            f"{len(groups)} image group(s) cannot fill {len(shares)} splits ({', '.join(shares)}): "
            "add images or ask for fewer splits"
        )
    label_totals: Counter[str] = Counter(label for record in records for label in record.labels)
    group_labels = {
        key: Counter(label for record in members for label in record.labels)
        for key, members in groups.items()
    }
    order = sorted(groups)
    random.Random(seed).shuffle(order)

    def rarity(key: str) -> tuple[float, int]:
        """Groups holding the rarest class go first, bigger ones before smaller; negatives last."""
        rarest = min((label_totals[label] for label in group_labels[key]), default=float("inf"))
        return rarest, -sum(group_labels[key].values())

    order.sort(key=rarity)  # stable: the seeded shuffle breaks the remaining ties
    placed_labels: dict[str, Counter[str]] = {split: Counter() for split in shares}
    placed_images: Counter[str] = Counter()
    assignment: dict[str, str] = {}
    for position, key in enumerate(order):
        members = groups[key]

        def need(split: str, key: str = key, size: int = len(members)) -> tuple[float, float]:
            """How far `split` is below its share, for this group's classes, then in images."""
            image_need = size * (shares[split] - placed_images[split] / len(records))
            if not group_labels[key]:
                return image_need, 0.0
            label_need = sum(
                count * (shares[split] - placed_labels[split][label] / label_totals[label])
                for label, count in group_labels[key].items()
            )
            return label_need, image_need

        # When only as many groups are left as splits still empty, they go to those splits.
        empty = [split for split in shares if placed_images[split] == 0]
        candidates = empty if len(order) - position <= len(empty) else list(shares)
        split = max(candidates, key=need)
        placed_labels[split].update(group_labels[key])
        placed_images[split] += len(members)
        assignment.update({record.name: split for record in members})
    return assignment


def write_manifest(path: Path, records: Iterable[ImageRecord], assignment: dict[str, str]) -> None:
    """splits.csv: one row per image (image, group, split), reusable with `convert --splits`."""
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(MANIFEST_COLUMNS)
        for record in sorted(records, key=lambda record: record.name):
            writer.writerow((record.name, record.group, assignment[record.name]))


def read_manifest(path: Path, records: Sequence[ImageRecord]) -> dict[str, str]:
    """Image name -> split from a splits.csv, refusing one that does not cover exactly these images
    or that puts images of one of their groups into different splits."""
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
    except OSError as error:
        raise DataError(f"{path}: cannot read the split manifest: {error}") from error
    if not rows or tuple(rows[0]) != MANIFEST_COLUMNS:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise DataError(f"{path}:1: expected the header {','.join(MANIFEST_COLUMNS)}, got {got}")
    assignment: dict[str, str] = {}
    split_of_group: dict[str, tuple[str, int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 3 or not all(row):
            raise DataError(f"{path}:{line}: expected image,group,split, got {','.join(row)!r}")
        image, group, split = row
        if split not in SPLITS and not split.startswith("fold-"):
            raise DataError(f"{path}:{line}: split {split!r} is not one of train, val, test, fold-N")
        if group in split_of_group and split_of_group[group][0] != split:
            raise DataError(
                f"{path}:{line}: group {group!r} is in {split!r} here and in "
                f"{split_of_group[group][0]!r} at line {split_of_group[group][1]}: that leaks"
            )
        split_of_group.setdefault(group, (split, line))
        assignment[image] = split
    names = {record.name for record in records}
    unknown, missing = sorted(set(assignment) - names), sorted(names - set(assignment))
    if unknown or missing:
        raise DataError(
            f"{path}: the manifest does not match the data set: "
            f"{len(missing)} image(s) missing from it {missing[:5]}, "
            f"{len(unknown)} listed image(s) not in the data {unknown[:5]}"
        )
    _refuse_split_groups(path, records, assignment)
    return assignment


def _refuse_split_groups(path: Path, records: Sequence[ImageRecord], assignment: dict[str, str]) -> None:
    """The groups that count are this run's (--group-pattern may differ from the run that wrote the
    manifest): its group column only records what they were then."""
    images_by_split: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for record in sorted(records, key=lambda record: record.name):
        images_by_split[record.group][assignment[record.name]].append(record.name)
    leaking = {group: by_split for group, by_split in images_by_split.items() if len(by_split) > 1}
    if not leaking:
        return
    listing = "\n".join(
        f"  group {group!r}: "
        + "; ".join(f"{split}: {', '.join(images)}" for split, images in sorted(by_split.items()))
        for group, by_split in sorted(leaking.items())[:10]
    )
    raise DataError(
        f"{path}: the manifest puts images of one group of this run into different splits, which leaks "
        f"({len(leaking)} group(s); it was written with other groups, e.g. without --group-pattern):\n"
        f"{listing}\nconvert without --splits to split by the current groups, or edit {path.name} so "
        "that each group's images share one split"
    )
