"""Anchors against real data: the CPU recipe's written anchors, `anchor: auto`'s fit, and their cost.

Run: .venv/bin/python bench/anchor_fit.py [--data-root ../shared/data] [--steps 100] [--repeats 2]
     [--accuracy-steps 0]

1. Converts ISBI EDF nuclei, ISBI VOC cells and CRIC (64 px boxes around the nucleus points) from
   ../shared/data, and the 50-image sample, and prints per set and input size (512, 1024) the
   fraction of training boxes with an anchor at IoU >= 0.5: for the recipe's written anchors
   (`cervical_tf.anchor=fixed`) and for the layout `anchor: auto` fits.
2. --steps N (> 0): trains the CPU recipe on the EDF nuclei N steps per run, --repeats runs per layout
   in ABBA order (the machine is shared), and prints the median speed of the 20-step loops, leaving out
   the first two (graph tracing, warm-up): the written anchors (P3-P6, 512 px), the fit (P2, 512 px),
   P3-P6 with two scales per octave (the scales' own cost), and the larger input that fits without P2
   (1024 px).
3. --accuracy-steps N (> 0): trains the written and the fitted anchors N steps each on the EDF nuclei
   (the recipe's schedule fitted to N) and prints the validation AP and AP50 of MODEL_DIR/metrics.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

from agnostic_nms import cpu_description
from train_cpu import CPU_CONFIG, SPEED, run

from cervical_tf.training.anchors import training_fit
from cervical_tf.training.config import ConfigRequest, load_experiment

PROJECT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cervical_tf"]
FIXED = {"cervical_tf": {"anchor": "fixed"}}
AUTO = {"cervical_tf": {"anchor": "auto"}}
SPEED_LAYOUTS = {  # --params_override of the CPU recipe
    "written anchors, P3-P6, 512 px": FIXED,
    "fitted (auto), 512 px": AUTO,
    "P3-P6, two scales per octave, 512 px": {"task": {"model": {"anchor": {"num_scales": 2}}}},
    "fitted (auto), 1024 px": AUTO | {"task": {"model": {"input_size": [1024, 1024, 3]}}},
}


def convert_sets(data_root: Path, scratch: Path) -> dict[str, Path]:
    """name -> converted folder (train and val only), for the sets found under data_root."""
    sources = {
        "ISBI EDF nuclei (1024x1024)": [
            "--format", "csv", "--input", data_root / "isbi2014_edf_nuclei_csv" / "annotations.csv",
            "--images", data_root / "isbi2014_edf_nuclei_csv" / "images", "--val", "0.25",
        ],
        "ISBI VOC cells (512x512)": [
            "--format", "voc", "--input", data_root / "isbi2014_cells_voc" / "annotations",
            "--images", data_root / "isbi2014_cells_voc" / "images",
        ],
        "CRIC, 64 px boxes (1376x1020)": [
            "--format", "cric", "--input", data_root / "cric8" / "classifications.csv",
            "--images", data_root / "cric8" / "images", "--box-size", "64",
        ],
    }  # fmt: skip
    folders = {}
    for index, (name, flags) in enumerate(sources.items()):
        if Path(flags[3]).exists():
            folders[name] = scratch / f"set{index}"
            run([*CLI, "convert", *map(str, flags), "--test", "0", "--output", str(folders[name])])
    run([*CLI, "sample", "--out", str(scratch / "sample_raw"), "--images", "50"])
    folders["sample (1024x768)"] = scratch / "sample"
    run([*CLI, "convert", "--format", "sipakmed", "--input", str(scratch / "sample_raw"), "--test", "0",
         "--output", str(folders["sample (1024x768)"])])  # fmt: skip
    return folders


def print_fits(folders: dict[str, Path]) -> None:
    print("| data | input | training boxes | written anchors | `anchor: auto` |")
    print("|---|---|---|---|---|")
    for name, folder in folders.items():
        for size in (512, 1024):
            resize = {"task": {"model": {"input_size": [size, size, 3]}}}
            fits = [
                training_fit(
                    load_experiment(
                        ConfigRequest(CPU_CONFIG, data_dir=folder, params_override=json.dumps(mode | resize))
                    ),
                    folder,
                )
                for mode in (FIXED, AUTO)
            ]
            cells = [f"{fit.covered:.1%} ({fit.layout}, {fit.layout.num_scales} scale(s))" for fit in fits]
            print(f"| {name} | {size} px | {len(fits[0].boxes)} | {cells[0]} | {cells[1]} |", flush=True)


def train(folder: Path, model_dir: Path, steps: int, override: dict, evaluate: bool) -> str:
    """`cervical-tf train`'s output (--num_train_steps fits the recipe's schedule to `steps`)."""
    trainer = {
        "steps_per_loop": 20,
        "summary_interval": 20,
        "validation_interval": steps if evaluate else 10**6,
    }
    return run(
        [*CLI, "train", "--pipeline_config_path", str(CPU_CONFIG), "--model_dir", str(model_dir),
         "--data", str(folder), "--num_train_steps", str(steps),
         "--params_override", json.dumps(override | {"trainer": trainer})]
    )  # fmt: skip


def measure_speeds(nuclei: Path, scratch: Path, steps: int, repeats: int) -> None:
    """Median steps/s of each run's loops after the first two, runs in ABBA order.

    The progress line prints no speed for the first loop (graph tracing); the first speed it prints
    is left out too (warm-up).
    """
    speeds: dict[str, list[float]] = {name: [] for name in SPEED_LAYOUTS}
    lines: dict[str, str] = {}
    order = [*SPEED_LAYOUTS, *reversed(SPEED_LAYOUTS)] * math.ceil(repeats / 2)
    for index, name in enumerate(order[: repeats * len(SPEED_LAYOUTS)]):
        output = train(nuclei, scratch / f"speed{index}", steps, SPEED_LAYOUTS[name], evaluate=False)
        speeds[name].append(statistics.median(float(speed) for _, speed in SPEED.findall(output)[1:]))
        lines[name] = anchors_line(output)
    print(f"training speed on the EDF nuclei, batch 2, {steps} steps per run, {repeats} run(s) each, load "
          f"average {os.getloadavg()[0]:.1f} at the end:")  # fmt: skip
    for name, measured in speeds.items():
        runs = ", ".join(f"{speed:.2f}" for speed in measured)
        print(f"  {name:40s} {statistics.median(measured):5.2f} steps/s ({runs})   {lines[name]}")


def last_evaluation(model_dir: Path) -> str:
    with (model_dir / "metrics.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return f"AP {float(rows[-1]['AP']):.3f}  AP50 {float(rows[-1]['AP50']):.3f}" if rows else "no evaluation"


def anchors_line(output: str) -> str:
    return next((line for line in output.splitlines() if line.startswith("anchors:")), "no anchors line")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument(
        "--steps", type=int, default=100, help="training steps per speed measurement (0: none)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per layout for the speed (ABBA order)")
    parser.add_argument("--accuracy-steps", type=int, default=0, help="training steps per AP measurement")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        folders = convert_sets(args.data_root, scratch)
        print_fits(folders)
        nuclei = folders.get("ISBI EDF nuclei (1024x1024)")
        if nuclei is None:
            print(f"{args.data_root}: no EDF nuclei; training measurements skipped")
            return
        if args.steps:
            measure_speeds(nuclei, scratch, args.steps, args.repeats)
        for name in list(SPEED_LAYOUTS)[:2] if args.accuracy_steps else ():
            model_dir = scratch / f"accuracy {name}"
            output = train(nuclei, model_dir, args.accuracy_steps, SPEED_LAYOUTS[name], evaluate=True)
            scores = last_evaluation(model_dir)
            print(f"{name:40s} {args.accuracy_steps} steps: {scores}   {anchors_line(output)}", flush=True)


if __name__ == "__main__":
    main()
