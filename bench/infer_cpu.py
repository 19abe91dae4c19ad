"""Per-image latency of an exported model on this CPU, for 1024x768 and 2048x1536 fields.

Run: .venv/bin/python bench/infer_cpu.py --model demo_output/export [--repeats 10]
Reports the median of `repeats` timed calls after 2 warm-up calls, per input size, through
`Predictor.predict` (the code `cervical-tf predict` and the server use).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from cervical_tf.inference.predictor import Predictor

SIZES = ((1024, 768), (2048, 1536))


def synthetic_field(width: int, height: int) -> np.ndarray:
    """A pale noisy field with dark blobs, so the model has something cell-like to propose."""
    rng = np.random.default_rng(0)
    image = rng.normal(230, 10, size=(height, width, 3))
    for _ in range(30):
        x, y, radius = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 60)
        yy, xx = np.ogrid[:height, :width]
        image[(xx - x) ** 2 + (yy - y) ** 2 < radius**2] -= 90
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    predictor = Predictor.load(args.model)
    for width, height in SIZES:
        image = synthetic_field(width, height)
        for _ in range(2):
            predictor.predict(image, "warm-up")
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            predictor.predict(image, "timed")
            seconds.append(time.perf_counter() - started)
        print(
            f"{width}x{height}: median {statistics.median(seconds) * 1000:.0f} ms per image "
            f"(min {min(seconds) * 1000:.0f}, max {max(seconds) * 1000:.0f}, {args.repeats} repeats)"
        )


if __name__ == "__main__":
    main()
