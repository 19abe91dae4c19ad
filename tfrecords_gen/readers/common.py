"""Helpers more than one reader needs: input checks, number and CSV parsing, finding images.

Everything here turns bad input into either a `DataError` (the input path itself is wrong) or an
`ItemError` that the reader records as a `Problem` before going on with the next item.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.image_files import find_images
from tfrecords_gen.records import Kind, Origin, ParsedImage, Problem


class ItemError(Exception):
    """One line, field or object that cannot be read; the reader records it and goes on."""

    def __init__(self, message: str, kind: str = Kind.PARSE_ERROR) -> None:
        super().__init__(message)
        self.kind = kind

    def problem(self, origin: Origin, where: str = "") -> Problem:
        """The Problem to report at `origin`; `where` names the item inside the file (JSON formats)."""
        message = f"{where}: {self}" if where else str(self)
        return Problem(origin, self.kind, message)


# ---------------------------------------------------------------- the input path


def require_file(path: Path, expected: str) -> Path:
    """`path` when it is a file; else a DataError saying what was expected."""
    if not path.exists():
        raise DataError(f"{path}: not found; expected {expected}")
    if not path.is_file():
        raise DataError(f"{path}: is a folder; expected {expected}")
    return path


def require_folder(path: Path, expected: str) -> Path:
    """`path` when it is a folder; else a DataError saying what was expected."""
    if not path.exists():
        raise DataError(f"{path}: not found; expected {expected}")
    if not path.is_dir():
        raise DataError(f"{path}: is a file; expected {expected}")
    return path


def input_files(path: Path, suffixes: Iterable[str], expected: str) -> list[Path]:
    """The annotation files to read: `path` itself, or the files of folder `path` with one of `suffixes`.

    Suffixes compare case-insensitively; a folder holding none of them is the wrong kind of input.
    """
    wanted = {suffix.lower() for suffix in suffixes}
    if not path.exists():
        raise DataError(f"{path}: not found; expected {expected}")
    if path.is_file():
        if path.suffix.lower() not in wanted:
            raise DataError(f"{path}: expected {expected}, got a {path.suffix or 'suffix-less'} file")
        return [path]
    files = sorted(child for child in path.iterdir() if child.is_file() and child.suffix.lower() in wanted)
    if not files:
        raise DataError(f"{path}: no {'/'.join(sorted(wanted))} file in this folder; expected {expected}")
    return files


# ---------------------------------------------------------------- values


def parse_float(text: str | None, name: str) -> float:
    """A float from text (plain or scientific, padding allowed); "nan" passes through for validate."""
    if text is None or not text.strip():
        raise ItemError(f"expected a number for {name}, got nothing")
    try:
        return float(text)
    except ValueError:
        raise ItemError(f'expected a number for {name}, got "{text.strip()}"') from None


def parse_int(text: str | None, name: str) -> int:
    """A whole number from text; "512.0" is accepted because converters often write sizes as floats."""
    value = parse_float(text, name)
    if not value.is_integer():
        raise ItemError(f'expected a whole number for {name}, got "{text.strip() if text else text}"')
    return int(value)


def json_number(value: object, name: str) -> float:
    """A JSON number as float; strings and booleans are refused so that a wrong field is reported."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ItemError(f"expected a number for {name}, got {json.dumps(value)}")
    return float(value)


def extent(points: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
    """`(x_min, y_min, x_max, y_max)` of points; NaN in any coordinate gives NaN there (for validate)."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    return _min(xs), _min(ys), _max(xs), _max(ys)


def _min(values: list[float]) -> float:
    return math.nan if any(math.isnan(value) for value in values) else min(values)


def _max(values: list[float]) -> float:
    return math.nan if any(math.isnan(value) for value in values) else max(values)


# ---------------------------------------------------------------- files


def load_json(path: Path) -> tuple[object, Problem | None]:
    """The parsed JSON of `path`, or None and a PARSE_ERROR naming the line where it broke."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        return None, Problem(Origin(path), Kind.PARSE_ERROR, f"cannot read file: {error}")
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return None, Problem(Origin(path, error.lineno), Kind.PARSE_ERROR, f"not valid JSON: {error.msg}")


@dataclass(frozen=True)
class CsvRow:
    """One data row of a headed CSV: its 1-based line in the file and its values by column name."""

    line: int
    values: dict[str, str]

    def text(self, column: str) -> str:
        """The non-empty value of `column` (stripped)."""
        value = self.values.get(column, "")
        if not value:
            raise ItemError(f'expected a value for {column}, got ""')
        return value

    def number(self, column: str) -> float:
        return parse_float(self.values.get(column), column)

    def optional_int(self, column: str) -> int | None:
        """A whole number, or None when the column is absent or empty."""
        value = self.values.get(column, "")
        return parse_int(value, column) if value else None


def read_csv_rows(
    path: Path, required_columns: Sequence[str], handle_row: Callable[[CsvRow], None]
) -> list[Problem]:
    """Calls `handle_row` for every data row of a CSV with a header line, in file order; returns the problems.

    Column names are compared stripped and lower-cased; values are stripped. Lines are exact
    (the header is line 1). Blank lines are skipped; a row with another field count than the
    header, or for which `handle_row` raises an ItemError, becomes a problem at its line. A file
    that cannot be read, or whose header lacks a required column, gives one PARSE_ERROR.
    The csv module is used rather than pandas because it knows the line of every row.
    """
    problems: list[Problem] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [name.strip().lower() for name in next(reader, [])]
            missing = [column for column in required_columns if column not in header]
            if missing:
                message = (
                    f"expected columns {','.join(required_columns)}, got {','.join(header) or 'nothing'}"
                )
                return [Problem(Origin(path, 1), Kind.PARSE_ERROR, message)]
            last_line = reader.line_num
            for fields in reader:
                line, last_line = last_line + 1, reader.line_num
                if not any(field.strip() for field in fields):
                    continue
                try:
                    if len(fields) != len(header):
                        raise ItemError(
                            f'expected {len(header)} fields, got {len(fields)}: "{",".join(fields)}"'
                        )
                    values = {name: field.strip() for name, field in zip(header, fields, strict=True)}
                    handle_row(CsvRow(line, values))
                except ItemError as error:
                    problems.append(error.problem(Origin(path, line)))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(Problem(Origin(path), Kind.PARSE_ERROR, f"cannot read CSV: {error}"))
    return problems


# ---------------------------------------------------------------- images


def image_folders(images_dir: Path | None, fallbacks: Sequence[Path]) -> list[Path]:
    """Where to look for images named by an annotation: --images alone when given, else `fallbacks`."""
    return [images_dir] if images_dir is not None else list(fallbacks)


def resolve_image(name: str, folders: Sequence[Path]) -> Path:
    """`folder / name` in the first folder that holds it; else in the first folder (validate reports it)."""
    for folder in folders:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return folders[0] / name


def images_by_stem(folder: Path) -> dict[str, Path]:
    """The images of `folder` by stem and by full name; the first in sorted order wins a shared stem."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for image in find_images(folder):
            found.setdefault(image.stem, image)
            found.setdefault(image.name, image)
    return found


def used_image_dirs(images_dir: Path | None, images: Iterable[ParsedImage]) -> list[Path]:
    """`ReadResult.image_dirs`: --images when given, else the folders the images were resolved in."""
    if images_dir is not None:
        return [images_dir]
    return sorted({image.image_path.parent for image in images})


def sort_images(images: Iterable[ParsedImage]) -> list[ParsedImage]:
    """Images in path order (then annotation file order), so that every run sees the same order."""
    return sorted(images, key=lambda image: (image.image_path, image.origin.path))
