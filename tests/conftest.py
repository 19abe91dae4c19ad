"""Fixtures shared by all tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real annotated data kept beside the project (../shared/data); absent in a user's fresh clone.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder, or a clean skip when this checkout does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA
