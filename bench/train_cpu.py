"""Training speed (steps/s) on this CPU: the CPU recipe and the alternatives it was chosen over.

Run: .venv/bin/python bench/train_cpu.py [--steps 60] [--variants all]
Generates the 50-image sample, converts it, then trains each variant for `steps` steps with
`cervical-tf train` and reports the speed of the last training loop (the first loop includes
graph tracing). Variants are overrides of pipeline_configs/faster_rcnn_resnet18_fpn_512_cpu.yaml.
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
VARIANTS = {
    "cpu recipe: resnet18, slim FPN, P3-P6, 512": {},
    "resnet18, slim FPN, 640": {"input_size": [640, 640, 3]},
    "resnet18, COCO FPN and heads, P2-P6, 512": COCO_LAYOUT,
    "resnet50, COCO FPN and heads, P2-P6, 512": {
        **COCO_LAYOUT,
        "backbone": {"type": "resnet", "resnet": {"model_id": 50}},
    },
    "mobilenetv2, slim FPN, P3-P6, 512": {
        "backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2"}}
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
    args = parser.parse_args()
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
        for index, (name, model) in enumerate(VARIANTS.items()):
            override = json.dumps(
                {
                    "task": {"model": model},
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
                f"  {name:45s} {float(speeds[-1][1]):5.2f} steps/s"
                if speeds
                else f"  {name}: no speed printed"
            )


if __name__ == "__main__":
    main()
