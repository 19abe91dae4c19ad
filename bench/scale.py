"""Items per second of `predict --ray` with 1 and 2 Ray actors on this machine, the scaling ratio,
and what one item costs.

Run: .venv/bin/python bench/scale.py --model /tmp/demo_lite0/export [--images DIR] [--repeat 3]
(needs requirements-ray.txt). The items are image fields (default: the CRIC fields in
../shared/data/cric8/images, the list repeated `repeat` times), each decoded, detected and its
overlay written: what `predict` does per field. Every run uses actors of one CPU (TensorFlow at one
thread), on a local Ray of as many CPUs as this machine has.

`plain`: `cervical-tf predict` on the same images in a fresh process (TensorFlow's own threads on
all CPUs; wall time with its start and model load), the baseline Ray must beat.
Per Ray run: `wall` (the Ray Data run, actor start and model load included), `steady` (the first
item's start to the last item's end, as the actors saw it), items/s over each, the ratio of the
2-actor to the 1-actor steady rate; `sum of actors` adds each actor's own rate (its items over its
first start to its last end), which a late-starting actor does not pull down. Per item: decode,
model call and overlay write, timed in this process at one TensorFlow thread (the cost inside an
actor); `in actor`, the mean time an actor spent on an item; `Ray overhead`, each actor's share of
the steady window per item minus the time inside the actor (scheduling, pickling, Ray Data's
blocks); `start`, wall minus steady (actors starting, TensorFlow import, model load).

With `--slide PATH` the same is measured on the tissue tiles of that slide (each read at the
model's pixel size and detected: no overlay), the per-item cost split into read and model call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agnostic_nms import cpu_description

SHARED_FIELDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cric8" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="an export (EXPORT_DIR)")
    parser.add_argument("--images", type=Path, default=SHARED_FIELDS, help="a folder of fields")
    parser.add_argument("--repeat", type=int, default=3, help="the folder's images, this many times")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--slide", type=Path, help="also measure the tiles of this slide as the items")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # as in each actor
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from cervical_tf.boxes import AGNOSTIC_NMS
    from cervical_tf.inference.predict_images import resolve_images
    from cervical_tf.inference.predictor import Predictor

    predictor = Predictor.load(args.model)
    images = resolve_images([str(args.images)]) * args.repeat
    run = {
        "tile": None,
        "overlap": 128,
        "max_detections": 100,
        "min_score": 0.5,
        "agnostic_nms": AGNOSTIC_NMS,
    }
    machine = f"{cpu_description()}, {os.cpu_count()} CPU"
    reports = []
    with tempfile.TemporaryDirectory() as scratch:
        plain = plain_run(args.model, images, Path(scratch) / "plain")
        parts = per_item_cost(predictor, images, Path(scratch), run)
        runs = [
            ray_run(predictor, images, [], Path(scratch) / f"ray{count}", run, count) for count in args.actors
        ]
        reports.append(_report(f"{len(images)} fields", machine, args.model, plain, parts, runs))
        if args.slide:
            parts, tiles = per_tile_cost(predictor, args.slide)
            plain = plain_run(args.model, [args.slide], Path(scratch) / "plain_slide", items=tiles)
            slides = [(args.slide, "slide")]
            runs = [
                ray_run(predictor, [], slides, Path(scratch) / f"ray_slide{count}", run, count)
                for count in args.actors
            ]
            reports.append(
                _report(f"{tiles} tiles of {args.slide.name}", machine, args.model, plain, parts, runs)
            )
    print("\n\n".join(markdown(report) for report in reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1), encoding="utf-8")


def _report(items: str, machine: str, model: Path, plain: dict, parts: dict, runs: list[dict]) -> dict:
    report = {"machine": machine, "model": str(model), "items": items, "plain": plain}
    report |= {"per_item_ms": parts, "runs": runs}
    if len(runs) >= 2:
        report["scaling"] = runs[-1]["steady_items_per_s"] / runs[0]["steady_items_per_s"]
    return report


def plain_run(model: Path, images: list[Path], output: Path, items: int | None = None) -> dict:
    """`cervical-tf predict` on `images` in a fresh process: wall s and items/s (start included;
    `items`: how many, default one per image, a slide's tiles). Each repeat is a copy of its own,
    as predict keeps each file once."""
    copies = output.parent / f"{output.name}_inputs"
    copies.mkdir(parents=True)
    for index, path in enumerate(images):
        shutil.copyfile(path, copies / f"{index:04d}_{path.name}")
    command = [sys.executable, "-m", "cervical_tf", "predict", "--model", str(model), "--output", str(output)]
    command.append(str(copies))
    started = time.perf_counter()
    subprocess.run(command, check=len(images) > 1, capture_output=True)  # a slide run may exit 2
    seconds = time.perf_counter() - started
    return {"wall_s": seconds, "items_per_s": (items or len(images)) / seconds}


def per_item_cost(predictor: object, images: list[Path], scratch: Path, run: dict) -> dict:
    """Median ms of decode, model call and overlay write per image, in this process (one thread)."""
    from cervical_tf.images import load_image
    from cervical_tf.inference import outputs

    colors = outputs.palette(predictor.labels)
    predictor.predict(load_image(images[0]), "warm-up", **run)
    timings: dict[str, list[float]] = {"decode": [], "model": [], "write": []}
    for index, path in enumerate(images):
        started = time.perf_counter()
        image = load_image(path)
        decoded = time.perf_counter()
        detections = predictor.predict(image, str(path), **run)
        detected = time.perf_counter()
        outputs.write_overlay(scratch / f"{index}.png", image, detections, colors)
        written = time.perf_counter()
        timings["decode"].append(decoded - started)
        timings["model"].append(detected - decoded)
        timings["write"].append(written - detected)
    return {name: 1000 * statistics.median(values) for name, values in timings.items()}


def per_tile_cost(predictor: object, slide: Path) -> tuple[dict, int]:
    """Median ms of reading a tile and of the model call on it, in this process (one thread), and
    the number of tissue tiles."""
    from cervical_tf.slides.detect import SlideOptions, _read, slide_tiles  # _read: detect_tile's read
    from cervical_tf.slides.reader import open_slide

    options = SlideOptions()
    timings: dict[str, list[float]] = {"read": [], "model": []}
    with open_slide(slide) as reader:
        work = slide_tiles(predictor, reader, options)
        for tile in work.wanted:
            started = time.perf_counter()
            pixels = _read(reader, tile, work.plan)
            read = time.perf_counter()
            predictor.predict(pixels, "tile", max_detections=100, min_score=0.5)
            timings["read"].append(read - started)
            timings["model"].append(time.perf_counter() - read)
    return {name: 1000 * statistics.median(values) for name, values in timings.items()}, len(work.wanted)


def ray_run(
    predictor: object,
    images: list[Path],
    slides: list[tuple[Path, str]],
    output: Path,
    run: dict,
    actors: int,
) -> dict:
    """One `predict --ray` run (its fields, or its slides' tiles) on `actors` actors of a fresh local Ray."""
    import ray

    from cervical_tf.distributed.ray_predict import RayPool
    from cervical_tf.slides.detect import SlideOptions

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        pool = RayPool.connect("local", predictor.source, actors=actors)
        fields = [(path, output / "overlays" / f"{index}.png") for index, path in enumerate(images)]
        found = pool.detect(predictor, slides, output, SlideOptions(), fields, run).fields
    finally:
        ray.shutdown()
    failed = [str(path) for path, result in found if not hasattr(result, "boxes_px")]  # fields
    if slides:  # a tile's error is only in the actors' results (a field's is in `found` too)
        failed += [result.error for result in pool.last_results if result.error]
    results = pool.last_results
    steady = max(result.started + result.seconds for result in results) - min(r.started for r in results)
    in_actor = statistics.mean(result.seconds for result in results)
    pids = sorted({result.pid for result in results})
    per_actor = [[result for result in results if result.pid == pid] for pid in pids]
    summed = sum(
        len(mine) / (max(r.started + r.seconds for r in mine) - min(r.started for r in mine))
        for mine in per_actor
    )
    return {
        "actors": actors,
        "failed": failed,
        "wall_s": pool.last_seconds,
        "steady_s": steady,
        "items_per_s": len(results) / pool.last_seconds,
        "steady_items_per_s": len(results) / steady,
        "sum_of_actors_items_per_s": summed,
        "in_actor_ms": 1000 * in_actor,
        "ray_overhead_ms": 1000 * (steady * actors / len(results) - in_actor),
        "start_s": pool.last_seconds - steady,
        "actor_peak_mb": max(result.peak_mb for result in results),
        "items_per_actor": sorted(len(mine) for mine in per_actor),
    }


def markdown(report: dict) -> str:
    parts = report["per_item_ms"]
    lines = [
        f"{report['machine']}; {report['items']}; model {report['model']}",
        "",
        "| actors | wall s | items/s (wall) | steady s | items/s (steady) | items/s (sum of actors) "
        "| in actor ms/item | Ray overhead ms/item | start s | items per actor | actor peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain = report["plain"]
    lines.append(
        f"| plain predict (all CPUs, 1 process) | {plain['wall_s']:.1f} | {plain['items_per_s']:.2f} "
        "| | | | | | | | |"
    )
    for run in report["runs"]:
        lines.append(
            f"| {run['actors']} | {run['wall_s']:.1f} | {run['items_per_s']:.2f} | {run['steady_s']:.1f} "
            f"| {run['steady_items_per_s']:.2f} | {run['sum_of_actors_items_per_s']:.2f} "
            f"| {run['in_actor_ms']:.0f} | {run['ray_overhead_ms']:.0f} "
            f"| {run['start_s']:.1f} | {run['items_per_actor']} | {run['actor_peak_mb']:.0f} |"
        )
    if "scaling" in report:
        lines.append(
            f"\nscaling (steady items/s, {report['runs'][-1]['actors']} vs 1 actor): {report['scaling']:.2f}x"
        )
    lines.append(
        "per item in one process at one thread: " + ", ".join(f"{k} {v:.0f} ms" for k, v in parts.items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
