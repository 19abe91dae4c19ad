"""Where the real annotated data beside the project lives (../shared/data; absent in a user's clone).

A module of its own so that test helpers can import it: `from conftest import ...` finds whichever
conftest.py pytest imported first (tests/readers/ has one too).
"""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
