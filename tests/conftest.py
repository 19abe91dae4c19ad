"""Fixtures shared by all tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import SHARED_DATA


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder, or a clean skip when this checkout does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA
