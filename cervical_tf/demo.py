"""`cervical-tf demo` (= `make demo`): the whole job on the built-in synthetic sample.

sample -> convert (train/val/test) -> train the demo config -> export -> evaluate on the test
split -> predict on the test images -> summary. Each step is the same verb a user would run.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

from cervical_tf.errors import DataError

DEMO_CONFIG = (
    Path(__file__).resolve().parent.parent / "pipeline_configs" / "faster_rcnn_resnet18_fpn_512_demo.yaml"
)
DEMO_IMAGES = 50
# Training speed of the demo config measured on the 2-core reference machine (bench/train_cpu.py).
DEMO_STEPS_PER_SECOND = 1.4
AP50_TARGET = 0.5


def run(out: Path, minutes: float | None, run_verb: Callable[[list[str]], int]) -> None:
    """Run the six steps into `out` (must be empty or new); `run_verb` is `cervical-tf`'s main."""
    started = time.perf_counter()
    if out.exists() and any(out.iterdir()):
        raise DataError(
            f"--output {out}: not empty; remove it or choose another folder (the demo starts fresh)"
        )
    sample, data, model, export = out / "sample", out / "data", out / "model", out / "export"
    report, predictions = out / "report", out / "predictions"
    steps = _training_override(minutes)

    def step(title: str, *argv: str | Path) -> None:
        print(f"\n== {title}: cervical-tf {' '.join(map(str, argv))}", flush=True)
        if run_verb([str(value) for value in argv]) != 0:
            raise DataError(f"the demo stopped at: {title}")

    step("1/6 generate the synthetic sample", "sample", "--out", sample, "--images", DEMO_IMAGES, "--seed", 0)
    step(
        "2/6 convert",
        "convert",
        "--format",
        "sipakmed",
        "--input",
        sample,
        "--output",
        data,
        "--val",
        0.15,
        "--test",
        0.15,
        "--seed",
        0,
    )
    train_argv = ["train", "--pipeline_config_path", DEMO_CONFIG, "--model_dir", model, "--data", data]
    step("3/6 train", *train_argv, *(["--params_override", steps] if steps else []))
    step(
        "4/6 export",
        "export",
        "--pipeline_config_path",
        DEMO_CONFIG,
        "--trained_checkpoint_dir",
        model,
        "--output_directory",
        export,
        "--data",
        data,
    )
    step(
        "5/6 evaluate on the test split",
        "evaluate",
        "--model",
        export,
        "--data",
        data / "test-*.tfrecord",
        "--output",
        report,
    )
    step(
        "6/6 predict on the test images",
        "predict",
        "--model",
        export,
        "--output",
        predictions,
        *_test_images(data / "splits.csv", sample),
    )
    _summary(out, time.perf_counter() - started)


def _training_override(minutes: float | None) -> str | None:
    """A --params_override for a training budget: steps at the measured speed, LR drop at 80%."""
    if minutes is None:
        return None
    steps = max(50, round(minutes * 60 * DEMO_STEPS_PER_SECOND))
    return json.dumps(
        {
            "trainer": {
                "train_steps": steps,
                "validation_interval": steps,
                "optimizer_config": {"learning_rate": {"stepwise": {"boundaries": [round(steps * 0.8)]}}},
            }
        }
    )


def _test_images(manifest: Path, sample: Path) -> list[Path]:
    with manifest.open(newline="") as stream:
        return [sample / row["image"] for row in csv.DictReader(stream) if row["split"] == "test"]


def _summary(out: Path, seconds: float) -> None:
    report = json.loads((out / "report" / "report.json").read_text())
    ap50 = report["AP50"]
    verdict = "meets" if ap50 is not None and ap50 >= AP50_TARGET else "MISSES"
    print(f"\n== demo finished in {seconds / 60:.1f} min")
    print(f"test split: AP {report['AP']:.3f}  AP50 {ap50:.3f}  ({verdict} the {AP50_TARGET} AP50 target)")
    print(f"report:      {out / 'report' / 'report.md'}")
    print(f"overlays:    {out / 'predictions' / 'overlays'}/")
    print(f"model:       {out / 'export'} (SavedModel)")
    print(f"tensorboard: tensorboard --logdir {out / 'model'}")
