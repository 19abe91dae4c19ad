"""Conversion throughput (images/s) of `cervical-tf convert` on the sample and on real data.

Run: .venv/bin/python bench/convert_throughput.py [--images 50] [--repeats 3]
Reports the median wall time of whole `convert` runs (read, validate, split, encode, write)
for the built-in sample and, when ../shared/data exists, for the real CRIC fields.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tfrecords_gen.convert import ConvertRequest, convert
from tfrecords_gen.sample import SampleSpec, generate_sample

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def time_convert(name: str, request_fields: dict, repeats: int, scratch: Path) -> None:
    seconds, images = [], 0
    for repeat in range(repeats):
        request = ConvertRequest(output=scratch / f"{name}-{repeat}", progress=False, **request_fields)
        started = time.perf_counter()
        outcome = convert(request)
        seconds.append(time.perf_counter() - started)
        assert outcome.written is not None, [str(problem) for problem in outcome.problems]
        images = outcome.written.images
    median = statistics.median(seconds)
    print(f"{name:28s} {images:5d} images  median {median:6.2f} s  {images / median:7.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        started = time.perf_counter()
        generate_sample(scratch / "sample", SampleSpec(images=args.images), progress=False)
        print(f"{'sample generation':28s} {args.images:5d} images  {time.perf_counter() - started:6.2f} s")
        time_convert(
            "sample (1024x768 BMP)",
            {"format": "sipakmed", "input": scratch / "sample"},
            args.repeats,
            scratch,
        )
        cric = SHARED_DATA / "cric8"
        if cric.exists():
            time_convert(
                "cric8 CSV (1376x1020 PNG)",
                {"format": "cric", "input": cric / "classifications.csv"},
                args.repeats,
                scratch,
            )
            time_convert(
                "cric8 GeoJSON",
                {"format": "geojson", "input": cric / "geojson", "images": cric / "images"},
                args.repeats,
                scratch,
            )
        else:
            print(f"{SHARED_DATA} not found: real-data measurements skipped")


if __name__ == "__main__":
    main()
