"""Which recipe learns most from real smears in the same wall-clock time? k-fold, side by side.

Run: .venv/bin/python bench/learn_real.py [--data-root ../shared/data] [--sets edf voc cric]
     [--recipes r18 lite0 plain] [--extra NAME=CONFIG[@JSON_OVERRIDE] ...] [--folds 3] [--minutes 5]
     [--output DIR]

Recipes: r18, pipeline_configs/faster_rcnn_resnet18_fpn_512_cpu.yaml (ResNet-18 from scratch); lite0,
pipeline_configs/faster_rcnn_lite0_fpn_512_cpu.yaml (ImageNet EfficientNet-Lite0 from its wheel);
plain, ../shared/baselines/plain_official_vision_r18_640.yaml (official.vision's fasterrcnn_resnetfpn_coco
from scratch at 640 px, P2-P6, its own anchors and cosine schedule; its header gives what it reached).
--extra NAME=CONFIG@JSON adds a variant: CONFIG trained with `--params_override JSON` (which may carry
a `cervical_tf:` block), e.g. 'lite0fixed=pipeline_configs/faster_rcnn_lite0_fpn_512_cpu.yaml@
{"cervical_tf": {"anchor": "fixed"}}'.

Sets in --data-root: edf, ISBI 2014 EDF nuclei (tutorial CSV, 12 fields of 1024x1024); voc, ISBI 2014
cells (Pascal VOC, 45 images of 512x512); cric, CRIC cric8 (8 fields of 1376x1020, nucleus points
boxed 64 px). Each is converted once into K folds (`convert --folds K --test 0 --seed 0`: fold-k
validates on the k-th share of the images and trains on the rest). Per fold, every recipe in turn
(so a shared machine's drift falls on all recipes alike):
`cervical-tf train --pipeline_config_path C --data FOLD --minutes M` (the budget covers building,
tracing, calibration and the evaluations the config asks for; the steps and the learning-rate
schedule are fitted to what this machine does in M minutes: MODEL_DIR/budget.json), `cervical-tf
export`, and prediction on the held-out images with `Predictor.predict` as `cervical-tf evaluate`
runs it (whole images, per-class NMS only, every score; at most 100 detections, every recipe's
max_num_detections). The comparison is the wall-clock budget per fold, not a step count: a recipe
that steps slower trains fewer steps in it. Training's own evaluations score the held-out fold
(metrics.csv) but choose nothing: export takes the last checkpoint.

Scores are pooled, not averaged: the held-out images of all K folds (each image held out once) are
scored as one set with `cervical-tf evaluate`'s code (AP, AP50, AR100, per-class AP50, from
evaluate_detections; its report is written to OUTPUT/SET/RECIPE-report/) and with the classes merged
(class-agnostic AP50: does the model find the cells). results.json adds each fold's own AP50.
Latency: median of 5 `Predictor.predict` calls after 2 warm-up calls on one real field of the set,
its centre square resized to 1024x1024, with the fold-1 export (or that of the first fold that
trained). Printed and written to OUTPUT/results.md and OUTPUT/results.json: the CPU, the command,
then per set a table. A run that fails is a table row saying where and why; the others go on.
OUTPUT is the script's work folder (converted sets, model dirs, exports, logs); a rerun replaces them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from agnostic_nms import cpu_description
from folds import class_agnostic, pooled, predict_fold

PROJECT = Path(__file__).resolve().parents[1]
RECIPES = {
    "r18": PROJECT / "pipeline_configs" / "faster_rcnn_resnet18_fpn_512_cpu.yaml",
    "lite0": PROJECT / "pipeline_configs" / "faster_rcnn_lite0_fpn_512_cpu.yaml",
    "plain": PROJECT.parent / "shared" / "baselines" / "plain_official_vision_r18_640.yaml",
}
LATENCY_SIDE = 1024
LATENCY_REPEATS = 5
STARTED = time.monotonic()


@dataclass(frozen=True)
class RealSet:
    title: str
    folder: str  # under --data-root, with the images in FOLDER/images
    format: str
    annotations: str  # under FOLDER
    flags: tuple[str, ...] = ()


SETS = {
    "edf": RealSet("ISBI EDF nuclei, 1024x1024", "isbi2014_edf_nuclei_csv", "csv", "annotations.csv"),
    "voc": RealSet("ISBI VOC cells, 512x512", "isbi2014_cells_voc", "voc", "annotations"),
    "cric": RealSet(
        "CRIC, 64 px boxes, 1376x1020", "cric8", "cric", "classifications.csv", ("--box-size", "64")
    ),
}


@dataclass(frozen=True)
class Recipe:
    name: str
    config: Path
    override: str | None = None  # --params_override JSON


class RunFailed(Exception):
    """A `cervical-tf` verb exited non-zero; the message is its last output line."""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--recipes", nargs="*", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=CONFIG[@JSON]")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per fold and recipe")
    parser.add_argument("--output", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    recipes = [Recipe(name, RECIPES[name]) for name in args.recipes] + [extra(text) for text in args.extra]
    if not recipes or args.folds < 2:
        parser.error("expected at least one recipe and --folds >= 2")
    work = (args.output or Path(tempfile.mkdtemp(prefix="learn_real_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "cpu": cpu_description(),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "folds": args.folds,
        "minutes": args.minutes,
    }
    header = [
        f"CPU: {results['cpu']}",
        f"command: {results['command']}",
        f"{args.folds} folds, {args.minutes:g} min of `cervical-tf train --minutes` per fold and recipe; "
        "scores pooled over the held-out images of all folds",
    ]
    print("\n".join(header), flush=True)
    results["sets"] = {
        name: run_set(SETS[name], args.data_root.resolve() / SETS[name].folder, work / name, recipes, args)
        for name in args.sets
    }
    results["seconds"] = round(time.monotonic() - STARTED)
    lines = [*header, ""]
    for name, result in results["sets"].items():
        lines += [f"## {SETS[name].title} ({name})", "", *table(result), ""]
    lines.append(f"total wall time {results['seconds'] / 60:.1f} min; work folder {work}")
    print("\n" + "\n".join(lines), flush=True)
    (work / "results.md").write_text("\n".join(lines) + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {work / 'results.md'}, {work / 'results.json'}")
    return 0


def extra(text: str) -> Recipe:
    """--extra NAME=CONFIG[@JSON]: CONFIG relative to the current folder, JSON checked here."""
    name, _, rest = text.partition("=")
    config, _, override = rest.partition("@")
    if not name or not config:
        raise SystemExit(f"--extra {text!r}: expected NAME=CONFIG[@JSON_OVERRIDE]")
    try:
        json.loads(override or "{}")
    except json.JSONDecodeError as error:
        raise SystemExit(f"--extra {text!r}: the override is not JSON: {error}") from error
    return Recipe(name, Path(config).resolve(), override or None)


def run_set(real: RealSet, source: Path, work: Path, recipes: list[Recipe], args) -> dict:
    """Convert one set into folds, train, export and predict every recipe per fold, score, time."""
    result: dict = {"title": real.title, "recipes": {}}
    if not source.is_dir():
        result["missing"] = f"{source}: not found"
        print(f"{real.title}: {result['missing']}; skipped", flush=True)
        return result
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    try:
        cli(
            work / "convert.log", "convert", "--format", real.format, "--input", source / real.annotations,
            "--images", source / "images", *real.flags, "--folds", args.folds, "--test", 0, "--seed", 0,
            "--output", data,
        )  # fmt: skip
    except RunFailed as error:
        result["missing"] = str(error)
        print(f"{real.title}: {error}; skipped", flush=True)
        return result
    runs: dict[str, list] = {recipe.name: [] for recipe in recipes}  # per fold: dict, or a failure
    for fold in range(1, args.folds + 1):
        for recipe in recipes:
            prefix = f"{real.title} fold {fold}/{args.folds} {recipe.name}"
            print(f"[{(time.monotonic() - STARTED) / 60:5.1f} min] {prefix}: training", flush=True)
            try:
                runs[recipe.name].append(
                    train_fold(recipe, data / f"fold-{fold}", work / recipe.name, fold, args)
                )
            except Exception as error:  # reported in the table; the other runs go on
                runs[recipe.name].append(f"fold {fold}: {error}")
            done = runs[recipe.name][-1]
            state = done if isinstance(done, str) else (
                f"{done['steps']} steps ({done['steps_per_second']:.2f} steps/s), "
                f"{len(done['pairs'])} held-out images predicted"
            )  # fmt: skip
            print(f"[{(time.monotonic() - STARTED) / 60:5.1f} min] {prefix}: {state}", flush=True)
    image = latency_field(source / "images")
    for recipe in recipes:
        result["recipes"][recipe.name] = score(recipe, runs[recipe.name], image, work, data)
    return result


def train_fold(recipe: Recipe, fold_data: Path, work: Path, fold: int, args) -> dict:
    """Train, export and predict one recipe on one fold: steps, speed, held-out (truth, detections)."""
    from cervical_tf.boxes import EVALUATE_AGNOSTIC_NMS

    model, export = work / f"fold-{fold}" / "model", work / f"fold-{fold}" / "export"
    shutil.rmtree(model.parent, ignore_errors=True)
    model.parent.mkdir(parents=True)
    override = ("--params_override", recipe.override) if recipe.override else ()
    began = time.monotonic()
    cli(
        model.parent / "train.log", "train", "--pipeline_config_path", recipe.config, "--model_dir", model,
        "--data", fold_data, "--minutes", args.minutes, *override,
    )  # fmt: skip
    seconds = time.monotonic() - began
    cli(
        model.parent / "export.log", "export", "--trained_checkpoint_dir", model, "--output_directory", export
    )
    trained = json.loads((model / "budget.json").read_text())["runs"][-1]
    return {
        "fold": fold,
        "steps": trained["to_step"],
        "steps_per_second": trained["steps_per_second"],
        "train_seconds": round(seconds, 1),
        "export": export,
        "pairs": predict_fold(export, fold_data, EVALUATE_AGNOSTIC_NMS),
    }


def score(recipe: Recipe, runs: list, image: np.ndarray, work: Path, data: Path) -> dict:
    """A recipe's row: pooled scores over its folds, or the failure; the latency of its first export."""
    from cervical_tf.evaluation.evaluate import evaluate_detections
    from cervical_tf.evaluation.metrics import coco_metrics
    from cervical_tf.evaluation.report import write_report
    from cervical_tf.inference.abnormal import abnormal_classes

    row: dict = {"config": str(recipe.config), "override": recipe.override}
    failures = [run for run in runs if isinstance(run, str)]
    folds = [run for run in runs if not isinstance(run, str)]
    row["folds"] = [
        {key: run[key] for key in ("fold", "steps", "steps_per_second", "train_seconds")}
        | {"AP50": coco_metrics(*pooled(run["pairs"]))["AP50"]}
        for run in folds
    ]
    if folds:
        try:
            row["latency_ms"] = latency(folds[0]["export"], image)
        except Exception as error:
            row["latency_ms"], row["latency_failed"] = None, str(error)
    if failures:
        row["failed"] = "; ".join(failures)
        return row
    truths, found, labels = pooled([pair for run in folds for pair in run["pairs"]])
    abnormal, reason = abnormal_classes(None, labels)
    report = evaluate_detections(truths, found, labels, abnormal, 0.5, abnormal_reason=reason)
    report["inputs"] = {
        "model": f"{recipe.name}: the {len(folds)} fold exports in {work / recipe.name}",
        "data": f"the held-out images of every fold of {data}",
        "tile": None,
        "overlap": None,
        "agnostic_nms": False,
    }
    write_report(report, work / f"{recipe.name}-report")
    row |= {key: report[key] for key in ("AP", "AP50", "AR100")}
    row["class_agnostic_AP50"] = class_agnostic(truths, found)["AP50"]
    row["per_class_AP50"] = {name: values["AP50"] for name, values in report["per_class"].items()}
    return row


def latency_field(images: Path) -> np.ndarray:
    """The set's first image (by name), its centre square resized to LATENCY_SIDE px: uint8 RGB."""
    from PIL import Image

    from cervical_tf.images import load_image

    pixels = load_image(sorted(path for path in images.iterdir() if path.is_file())[0])
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(pixels[top : top + side, left : left + side])
    return np.asarray(square.resize((LATENCY_SIDE, LATENCY_SIDE), Image.BILINEAR))


def latency(export: Path, image: np.ndarray) -> float:
    """Median ms of LATENCY_REPEATS `Predictor.predict` calls on `image`, after 2 warm-up calls."""
    from cervical_tf.inference.predictor import Predictor

    predictor = Predictor.load(export)

    def call() -> float:
        began = time.perf_counter()
        predictor.predict(image, "latency")
        return time.perf_counter() - began

    seconds = [call() for _ in range(2 + LATENCY_REPEATS)][2:]
    return round(statistics.median(seconds) * 1000, 1)


def table(result: dict) -> list[str]:
    """The markdown rows of one set's results."""
    if "missing" in result:
        return [f"skipped: {result['missing']}"]
    columns = (
        "recipe | steps (mean per fold) | steps/s | AP | AP50 | AR100 | class-agnostic AP50 | "
        f"per-class AP50 | latency per {LATENCY_SIDE}x{LATENCY_SIDE} field (vs r18)"
    )
    lines = [f"| {columns} |", "|" + "---|" * (columns.count("|") + 1)]
    reference = result["recipes"].get("r18", {}).get("latency_ms")
    for name, row in result["recipes"].items():
        steps = [fold["steps"] for fold in row["folds"]]
        speeds = [fold["steps_per_second"] for fold in row["folds"]]
        cells = [
            f"{statistics.mean(steps):.0f}" if steps else "-",
            f"{statistics.mean(speeds):.2f}" if speeds else "-",
        ]
        if "failed" in row:
            cells += [f"failed: {row['failed']}", "", "", "", ""]
        else:
            cells += [_cell(row[key]) for key in ("AP", "AP50", "AR100", "class_agnostic_AP50")]
            cells.append(
                ", ".join(f"{label}={_cell(value)}" for label, value in row["per_class_AP50"].items())
            )
        milliseconds = row.get("latency_ms")
        ratio = f" ({milliseconds / reference:.2f}x)" if milliseconds and reference else ""
        cells.append(f"{milliseconds:.0f} ms{ratio}" if milliseconds else row.get("latency_failed", "-"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def cli(log: Path, *argv: object) -> None:
    """`cervical-tf ARGV` with its output in `log`; RunFailed with the last line it wrote when it fails."""
    with log.open("w") as stream:
        command = [sys.executable, "-m", "cervical_tf", *map(str, argv)]
        returncode = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=PROJECT).returncode
    if returncode:
        written = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise RunFailed(f"{argv[0]} exited {returncode}: {written[-1][:300] if written else 'no output'}")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
