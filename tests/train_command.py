"""The `cervical-tf train` argument list the training tests share: the demo recipe on a converted folder."""

from __future__ import annotations

from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "pipeline_configs" / "faster_rcnn_lite0_fpn_512_demo.yaml"


def train_arguments(model_dir: Path, data: Path, override: str, *more: str) -> list[str]:
    """`train` on the demo recipe with `override` (JSON) and `more` flags (steps, minutes, cluster)."""
    return [
        "train",
        "--pipeline_config_path",
        str(DEMO_CONFIG),
        "--model_dir",
        str(model_dir),
        "--data",
        str(data),
        *more,
        "--params_override",
        override,
    ]
