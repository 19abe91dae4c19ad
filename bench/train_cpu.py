"""Training speed (steps/s) on this CPU: the CPU recipe and the alternatives it was chosen over.

Run: .venv/bin/python bench/train_cpu.py [--steps 60] [--variants lite0 resnet18 ...]
Generates the 50-image sample, converts it, then trains each variant (all, or those whose name
contains one of --variants) for `steps` steps with `cervical-tf train` and reports the speed of
the last training loop (the first loop includes graph tracing). Variants are overrides of
pipeline_configs/faster_rcnn_resnet18_fpn_512_cpu.yaml (from scratch).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIG = ROOT / "pipeline_configs" / "faster_rcnn_resnet18_fpn_512_cpu.yaml"
COCO_LAYOUT = {  # official.vision's COCO head and FPN sizes, with the P2 level
    "min_level": 2,
    "anchor": {"anchor_size": 6.0},
    "decoder": {"type": "fpn", "fpn": {"num_filters": 256}},
    "rpn_head": {"num_filters": 256},
    "detection_head": {"num_convs": 4, "num_filters": 256, "fc_dims": 1024},
}
LITE0 = {  # as in pipeline_configs/faster_rcnn_lite0_fpn_512_cpu.yaml
    "backbone": {"type": "efficientnet", "efficientnet": {"model_id": "b0", "se_ratio": 0.0}},
    "norm_activation": {"activation": "relu6", "norm_epsilon": 0.001},
}
VARIANTS = {  # task overrides
    "resnet18 from scratch, slim FPN, P3-P6, 512": {},
    "resnet18, slim FPN, 640": {"model": {"input_size": [640, 640, 3]}},
    "resnet18, COCO FPN and heads, P2-P6, 512": {"model": COCO_LAYOUT},
    "resnet50, COCO FPN and heads, P2-P6, 512": {
        "model": {**COCO_LAYOUT, "backbone": {"type": "resnet", "resnet": {"model_id": 50}}}
    },
    "mobilenetv2, slim FPN, P3-P6, 512": {
        "model": {"backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2"}}}
    },
    "lite0 ImageNet fine-tuned, slim FPN, P3-P6, 512": {
        "init_checkpoint": "pretrained:efficientnet-lite0",
        "model": LITE0,
    },
    "lite0 ImageNet frozen, slim FPN, P3-P6, 512": {
        "init_checkpoint": "pretrained:efficientnet-lite0",
        "freeze_backbone": True,
        "model": LITE0,
    },
    "lite0 ImageNet fine-tuned, slim FPN, P2-P6, 512": {
        "init_checkpoint": "pretrained:efficientnet-lite0",
        "model": {**LITE0, "min_level": 2},
    },
}
SPEED = re.compile(r"step (\d+)/\d+ .* ([\d.]+) steps/s")


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--variants", nargs="*", default=[], help="name parts to run (default: all)")
    args = parser.parse_args()
    chosen = {
        name: task for name, task in VARIANTS.items() if any(part in name for part in args.variants or [""])
    }
    cli = [sys.executable, "-m", "cervical_tf"]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        run([*cli, "sample", "--out", str(scratch / "sample"), "--images", "50"])
        run(
            [
                *cli,
                "convert",
                "--format",
                "sipakmed",
                "--input",
                str(scratch / "sample"),
                "--output",
                str(scratch / "data"),
            ]
        )
        print(f"training speed, batch 2, {args.steps} steps on the 50-image sample (last loop of 20 steps):")
        for index, (name, task) in enumerate(chosen.items()):
            override = json.dumps(
                {
                    "task": task,
                    "trainer": {"steps_per_loop": 20, "summary_interval": 20, "validation_interval": 10**6},
                }
            )
            output = run(
                [
                    *cli,
                    "train",
                    "--pipeline_config_path",
                    str(CPU_CONFIG),
                    "--model_dir",
                    str(scratch / f"model{index}"),
                    "--data",
                    str(scratch / "data"),
                    "--num_train_steps",
                    str(args.steps),
                    "--params_override",
                    override,
                ]
            )
            speeds = SPEED.findall(output)
            print(
                f"  {name:50s} {float(speeds[-1][1]):5.2f} steps/s"
                if speeds
                else f"  {name}: no speed printed"
            )


if __name__ == "__main__":
    main()
