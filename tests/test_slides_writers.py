"""detections.geojson and detections.csv (`outputs.write_geojson` / `write_detections_csv`, the
field's and the slide's) are the same bytes whatever the number of chunks they are written in, and
writing them takes memory that does not grow with the detections."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cervical_tf.inference import outputs
from cervical_tf.inference.detections import Detections


def slide_detections(count: int, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 80_000, (count, 2)).astype(np.float32)
    class_ids = rng.integers(1, 4, count).astype(np.int32)
    return Detections(
        image='/slides/a "quoted", µm slide.svs',
        width=90_000,
        height=45_000,
        boxes_px=np.concatenate([corners, corners + rng.uniform(1, 90, (count, 2)).astype(np.float32)], 1),
        scores=np.sort(rng.uniform(0.5, 1, count).astype(np.float32))[::-1],
        class_ids=class_ids,
        labels=tuple(("NILM", "LSIL", "HSIL")[class_id - 1] for class_id in class_ids),
    )


@pytest.mark.parametrize("count", [0, 1, outputs.CHUNK - 1, outputs.CHUNK, outputs.CHUNK + 1, 10_000])
def test_same_bytes_as_in_one_piece(tmp_path: Path, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the same writers with every row in one chunk (what they wrote before chunking), and
    the GeoJSON also against `json.dumps` of the collection the server sends."""
    detections = slide_detections(count)
    cards = (None, {"summary": "µ model", "classes": ["NILM", "LSIL"], "pixel_size_um": 0.25})
    for card in cards:
        outputs.write_geojson(tmp_path / "slide.geojson", [detections], card)
        expected = json.dumps(outputs.geojson_collection([detections], card)) + "\n"
        assert (tmp_path / "slide.geojson").read_text(encoding="utf-8") == expected
    outputs.write_detections_csv(tmp_path / "slide.csv", [detections])
    with monkeypatch.context() as patch:
        patch.setattr(outputs, "CHUNK", 10**9)
        outputs.write_geojson(tmp_path / "expected.geojson", [detections], cards[1])
        outputs.write_detections_csv(tmp_path / "expected.csv", [detections])
    outputs.write_geojson(tmp_path / "slide.geojson", [detections], cards[1])
    assert (tmp_path / "slide.geojson").read_bytes() == (tmp_path / "expected.geojson").read_bytes()
    assert (tmp_path / "slide.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "expected.csv",
        "expected.geojson",
        "slide.csv",
        "slide.geojson",
    ]  # no scratch or temporary file left


def test_memory_does_not_grow_with_the_detections(tmp_path: Path) -> None:
    """Peak Python allocations while writing 8,000 and 32,000 detections: about the same (the
    field writers: about 4x, some 2.4 KB a detection)."""

    def peak_mb(count: int) -> float:
        detections = slide_detections(count, seed=count)
        tracemalloc.start()
        outputs.write_geojson(tmp_path / "slide.geojson", [detections], {"summary": "model"})
        outputs.write_detections_csv(tmp_path / "slide.csv", [detections])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20

    small, large = peak_mb(8_000), peak_mb(32_000)
    assert large < 1.5 * small + 2, (small, large)
