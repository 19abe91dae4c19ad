"""label_map.pbtxt in the TF Object Detection API's text format; ids start at 1 (0 is background)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.atomic import atomic_path

_ITEM = re.compile(r"item\s*\{(?P<body>[^{}]*)\}", re.MULTILINE)
_FIELD = re.compile(r"""(?P<key>\w+)\s*:\s*(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<bare>[^\s]+))""")


def build_label_map(labels: Iterable[str]) -> dict[str, int]:
    """Class name -> id, ids 1..N in sorted name order so the same classes always get the same ids."""
    return {label: class_id for class_id, label in enumerate(sorted(set(labels)), start=1)}


def write_label_map(path: Path, label_map: dict[str, int]) -> None:
    items = [
        f"item {{\n  id: {class_id}\n  name: '{label}'\n  display_name: '{label}'\n}}\n"
        for label, class_id in sorted(label_map.items(), key=lambda item: item[1])
    ]
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(items), encoding="utf-8")


def read_label_map(path: Path) -> dict[str, int]:
    """Class name -> id from a label_map.pbtxt; refuses id 0, repeated ids and repeated names."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"{path}: cannot read the label map: {error}") from error
    label_map: dict[str, int] = {}
    for item in _ITEM.finditer(text):
        line = text.count("\n", 0, item.start()) + 1
        fields = {
            match["key"]: match["double"] or match["single"] or match["bare"]
            for match in _FIELD.finditer(item["body"])
        }
        if "id" not in fields or "name" not in fields or not fields["id"].isdigit():
            raise DataError(f"{path}:{line}: expected an item with an integer id and a name, got {fields}")
        class_id, name = int(fields["id"]), fields["name"]
        if class_id == 0 or class_id in label_map.values() or name in label_map:
            raise DataError(
                f"{path}:{line}: id {class_id} / name {name!r}: ids start at 1 and both are unique"
            )
        label_map[name] = class_id
    if not label_map:
        raise DataError(f"{path}: no `item {{ id: N name: 'NAME' }}` entries found")
    return label_map
