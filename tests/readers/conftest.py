"""Small on-disk fixtures for the reader tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Writes a tiny grey image (format from the suffix) and returns its path; creates parent folders."""

    def write(path: Path, width: int = 64, height: int = 48) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height), (128, 128, 128)).save(path)
        return path

    return write


@pytest.fixture
def write_text() -> Callable[[Path, str], Path]:
    """Writes text byte for byte (CRLF stays CRLF) and returns its path; creates parent folders."""

    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        return path

    return write
