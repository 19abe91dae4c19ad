"""Per-class against class-agnostic NMS on real CRIC fields: which default do predict, evaluate and serve get?

Run: .venv/bin/python bench/agnostic_nms.py [--data-root ../shared/data] [--steps 400] [--folds 2]
     [--output DIR]

CRIC (../shared/data/cric8, 8 fields, 178 cells in three Bethesda classes, 64 px boxes around the
nucleus points) is converted into K folds; for each fold the demo recipe is trained on the other
folds for --steps steps (a schedule fitted to the run), exported, and run on the held-out fold
twice: with the model's per-class NMS only, and with class-agnostic NMS on top. Both are scored
with the same code as `cervical-tf evaluate` (every detection, min score 0). Printed per setting,
over the held-out fields of all folds: AP, AP50, class-agnostic AP50 (classes merged: does it find
the cells), per-class AP50, and the cells labelled twice (pairs of detections of different
classes with IoU > 0.5, at score >= 0.05 as /v1/detect counts them). The CPU is printed first.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from folds import class_agnostic, pooled, predict_fold

PROJECT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = PROJECT / "pipeline_configs" / "faster_rcnn_lite0_fpn_512_demo.yaml"
SERVE_MIN_SCORE = 0.05  # /v1/detect's default: what the viewer counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=400, help="training steps per fold (default 400)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--output", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    cric = args.data_root / "cric8"
    if not cric.is_dir():
        print(f"{cric}: not found; this benchmark needs the shared CRIC fields", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_description()}")
    work = args.output or Path(tempfile.mkdtemp(prefix="agnostic_nms_"))
    data = work / "data"
    run(
        "convert", "--format", "cric", "--input", cric / "classifications.csv", "--images", cric / "images",
        "--box-size", 64, "--folds", args.folds, "--test", 0, "--seed", 0, "--output", data,
    )  # fmt: skip
    totals: dict[bool, list] = {False: [], True: []}
    for fold in range(1, args.folds + 1):
        fold_data, model, export = data / f"fold-{fold}", work / f"model-{fold}", work / f"export-{fold}"
        started = time.perf_counter()
        run(
            "train", "--pipeline_config_path", DEMO_CONFIG, "--model_dir", model, "--data", fold_data,
            "--params_override", schedule(args.steps),
        )  # fmt: skip
        print(f"fold {fold}: trained {args.steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
        run(
            "export", "--pipeline_config_path", DEMO_CONFIG, "--trained_checkpoint_dir", model,
            "--output_directory", export, "--data", fold_data, "--params_override", schedule(args.steps),
        )  # fmt: skip
        for agnostic in (False, True):
            totals[agnostic].extend(predict_fold(export, fold_data, agnostic))
    for agnostic in (False, True):
        report(totals[agnostic], "class-agnostic NMS" if agnostic else "per-class NMS (the model's own)")
    return 0


def schedule(steps: int) -> str:
    """The demo recipe with its learning-rate drop at 80% of `steps` and evaluation at the end."""
    return json.dumps(
        {
            "trainer": {
                "train_steps": steps,
                "validation_interval": steps,
                "checkpoint_interval": steps,
                "optimizer_config": {"learning_rate": {"stepwise": {"boundaries": [round(steps * 0.8)]}}},
            }
        }
    )


def report(pairs: list, title: str) -> None:
    from cervical_tf.boxes import iou
    from cervical_tf.evaluation.metrics import coco_metrics

    truths, found, labels = pooled(pairs)
    metrics = coco_metrics(truths, found, labels)
    one_class = class_agnostic(truths, found)
    twice = 0
    for detections in found:
        shown = detections.above(SERVE_MIN_SCORE)
        overlaps = iou(shown.boxes_px, shown.boxes_px)
        different = shown.class_ids[:, None] != shown.class_ids[None, :]
        twice += int(np.triu((overlaps > 0.5) & different, k=1).sum())
    per_class = "  ".join(f"{name} {_cell(values['AP50'])}" for name, values in metrics["per_class"].items())
    print(
        f"{title}: {len(truths)} fields, {sum(len(truth.class_ids) for truth in truths)} cells | "
        f"AP {_cell(metrics['AP'])}"
        f"  AP50 {_cell(metrics['AP50'])}  class-agnostic AP50 {_cell(one_class['AP50'])} | per-class AP50: "
        f"{per_class} | cells labelled twice at score >= {SERVE_MIN_SCORE}: {twice}",
        flush=True,
    )


def run(*argv: object) -> None:
    command = [sys.executable, "-m", "cervical_tf", *map(str, argv)]
    print("$ cervical-tf " + " ".join(map(str, argv)), flush=True)
    subprocess.run(command, check=True, cwd=PROJECT)


def cpu_description() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "?")
    flags = next((line for line in lscpu.splitlines() if line.startswith("Flags")), "")
    avx = "AVX-512" if "avx512f" in flags else "AVX2 only" if "avx2" in flags else "no AVX2"
    return f"{model} ({avx})"


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
