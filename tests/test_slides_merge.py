"""The slide's seam merge (`slides.merge.merge_slide`) keeps exactly what `tiling.merge_tiles` keeps,
in the same order, group by group of overlapping boxes; and its time grows with the detections,
not with their square."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cervical_tf.inference import tiling
from cervical_tf.slides.merge import merge_slide


def random_detections(rng: np.random.Generator, count: int, side: float, tied: bool) -> tiling.RawDetections:
    """Boxes of 0-120 px (some empty) over a `side`-px square, so many overlap in chains; scores
    from four values when `tied`, so ties decide the order."""
    corners = rng.uniform(0, side, (count, 2)).astype(np.float32)
    sizes = rng.uniform(0, 120, (count, 2)).astype(np.float32)
    sizes[: count // 10] = 0
    values = np.float32([0.5, 0.6, 0.7, 0.9]) if tied else rng.uniform(0.05, 1, 64).astype(np.float32)
    return tiling.RawDetections(
        np.concatenate([corners, corners + sizes], axis=1),
        rng.choice(values, count),
        rng.integers(1, 4, count).astype(np.int32),
        rng.uniform(size=count) < 0.3,
    )


@pytest.mark.parametrize("agnostic", [True, False])
def test_merge_slide_is_merge_tiles(agnostic: bool) -> None:
    rng = np.random.default_rng(7)
    for trial in range(30):
        count = int(rng.integers(0, 500))
        raw = random_detections(rng, count, float(rng.uniform(100, 3000)), tied=bool(trial % 2))
        expected = tiling.merge_tiles(raw, agnostic=agnostic)
        np.testing.assert_array_equal(merge_slide(raw, agnostic=agnostic), expected)


def test_merge_slide_with_a_box_over_everything() -> None:
    """One huge box makes every box a candidate of every other: still the same result."""
    rng = np.random.default_rng(3)
    raw = random_detections(rng, 300, 1000, tied=False)
    boxes = raw.boxes_px.copy()
    boxes[0] = (-10, -10, 1200, 1200)
    raw = tiling.RawDetections(boxes, raw.scores, raw.class_ids, raw.cut)
    for agnostic in (True, False):
        np.testing.assert_array_equal(merge_slide(raw, agnostic), tiling.merge_tiles(raw, agnostic))


def test_merge_slide_time_is_about_linear() -> None:
    """4x the cells at the same density take about 4x the time (merge_tiles: about 16x, and 16 s
    for 16,000 cells); a generous bound, so a busy machine does not fail it."""

    def seconds(count: int) -> float:
        rng = np.random.default_rng(count)
        centres = rng.uniform(0, np.sqrt(count) * 150, (count, 2)).astype(np.float32)
        raw = tiling.RawDetections(
            np.concatenate([centres - 32, centres + 32], axis=1),
            rng.uniform(0.5, 1, count).astype(np.float32),
            rng.integers(1, 3, count).astype(np.int32),
            rng.uniform(size=count) < 0.1,
        )
        started = time.perf_counter()
        merge_slide(raw, agnostic=True)
        return time.perf_counter() - started

    seconds(500)  # warm-up: scipy's imports
    small, large = min(seconds(4000) for _ in range(2)), seconds(16000)
    assert large < 10 * small + 0.5, (small, large)
