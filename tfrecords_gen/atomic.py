"""Outputs appear whole or not at all: write to a temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from cervical_tf.errors import DataError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; it replaces `path` only if the block completes."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(folder: Path, is_earlier_output: Callable[[Path], bool], refusal: str) -> Iterator[Path]:
    """Yield an empty hidden sibling of `folder` to write into; it replaces `folder` whole only if the
    block completes, and is removed if it does not.

    An existing non-empty `folder` is replaced only when `is_earlier_output(folder)` says it is this
    program's own output; otherwise DataError(`refusal`) is raised before anything is written.
    """
    if folder.exists() and any(folder.iterdir()) and not is_earlier_output(folder):
        raise DataError(f"{folder}: {refusal}")
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        retired = folder.parent / f".{folder.name}.old-{os.getpid()}"
        if folder.exists():
            os.replace(folder, retired)
        os.replace(staging, folder)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
