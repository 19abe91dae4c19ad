"""The facts of an export's model card, read from what training left behind (see `model_card`).

Training records nothing for the card on purpose: MODEL_DIR already holds it. pixel_size.json
holds the training images' pixel size (`convert --mpp`, copied by train: `training/pixel_size.py`);
params.yaml names the training data (its folder's dataset_stats.json counts classes and boxes and says whether
`cervical-tf sample` drew the images) and the recipe; the checkpoint holds the step it was saved
at; metrics.csv holds every validation. Whatever is missing is recorded as unknown, with why.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
from datetime import UTC, datetime
from pathlib import Path

from cervical_tf.export.model_card import CARD_VERSION
from cervical_tf.training.pixel_size import load_pixel_size

GLOBAL_STEP = "global_step/.ATTRIBUTES/VARIABLE_VALUE"  # the step counter in official.vision's checkpoints
SPLIT_FIELDS = ("images", "boxes", "classes")


def model_card_facts(
    params, checkpoint_path: str, model_dir: Path, labels: dict[str, int], config_path: Path | None
) -> dict:
    """The card of the model `params` + `checkpoint_path` trained in `model_dir` (label map `labels`)."""
    steps = trained_steps(checkpoint_path)
    pixel_size_um, pixel_size_note = load_pixel_size(model_dir)
    return {
        "card_version": CARD_VERSION,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "project_version": importlib.metadata.version("cervical-tf"),
        "classes": sorted(labels, key=labels.__getitem__),
        "training_data": training_data(_data_folder(params.task.train_data.input_path)),
        "pixel_size_um": pixel_size_um,
        "pixel_size_note": pixel_size_note,
        "recipe": recipe(params, config_path),
        "training": {
            "steps": steps,
            "planned_steps": params.trainer.train_steps,
            "checkpoint": Path(checkpoint_path).name,
        },
        "validation": last_validation(model_dir / "metrics.csv", steps),
    }


def training_data(folder: Path | None) -> dict:
    """`training_data`: the folder, its splits from dataset_stats.json, and how much of it was drawn."""
    unknown = {"folder": None if folder is None else str(folder), "splits": None}
    unknown |= {"synthetic_sample": "unknown", "synthetic_images": None}
    if folder is None:
        return {**unknown, "note": "params.yaml names no training data (task.train_data.input_path)"}
    stats_path = folder / "dataset_stats.json"
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {**unknown, "note": f"{stats_path}: not readable ({error}); class and box counts are unknown"}
    splits = {
        split: {field: numbers[field] for field in SPLIT_FIELDS} for split, numbers in stats["splits"].items()
    }
    if "synthetic_sample" not in stats:
        note = f"{stats_path} predates convert's synthetic_sample: convert again to know"
        return {**unknown, "splits": splits, "note": note}
    synthetic = (stats["synthetic_sample"] or {}).get("images", {})
    drawn, total = synthetic.get("train", 0), splits.get("train", {}).get("images", 0)
    share = "none" if drawn == 0 else "all" if drawn == total else "some"
    return {"folder": str(folder), "splits": splits, "synthetic_sample": share, "synthetic_images": synthetic}


def recipe(params, config_path: Path | None) -> dict:
    """The few config fields that say what was trained (params.yaml holds the rest)."""
    model = params.task.model
    return {
        "config": None if config_path is None else str(config_path),
        "backbone": backbone_name(model),
        "decoder": model.decoder.type,
        "input_size": list(model.input_size),
        "init_checkpoint": params.task.init_checkpoint or None,
        "batch_size": params.task.train_data.global_batch_size,
    }


def backbone_name(model) -> str:
    """The backbone by name: resnet-18, efficientnet-lite0 (B0 without squeeze-excite, with relu6), ..."""
    backbone_type = model.backbone.type
    settings = getattr(model.backbone, backbone_type, None)
    model_id = getattr(settings, "model_id", None)
    if model_id is None:
        return backbone_type
    relu6 = model.norm_activation.activation == "relu6"
    lite = backbone_type == "efficientnet" and settings.se_ratio == 0 and relu6
    return f"efficientnet-lite{model_id[1:]}" if lite else f"{backbone_type}-{model_id}"


def trained_steps(checkpoint_path: str) -> int | None:
    """The step counter saved in the checkpoint, or None when it has none (another tool's checkpoint)."""
    import tensorflow as tf  # deferred: only export needs it

    reader = tf.train.load_checkpoint(checkpoint_path)
    return int(reader.get_tensor(GLOBAL_STEP)) if reader.has_tensor(GLOBAL_STEP) else None


def last_validation(metrics_csv: Path, steps: int | None) -> dict | None:
    """{"step", "AP", "AP50"} of the last evaluation at or before `steps` in metrics.csv, or None."""
    try:
        with metrics_csv.open(newline="", encoding="utf-8") as stream:
            rows = [row for row in csv.DictReader(stream) if row.get("step", "").isdigit()]
    except OSError:
        return None
    earlier = [row for row in rows if steps is None or int(row["step"]) <= steps]
    if not earlier:
        return None
    row = earlier[-1]
    return {"step": int(row["step"]), "AP": _metric(row.get("AP")), "AP50": _metric(row.get("AP50"))}


def _data_folder(input_path: object) -> Path | None:
    """The folder of training's TFRecords: `data/train-*.tfrecord` (or the first of a list) -> data,
    relative paths taken from the current folder as training took them."""
    if isinstance(input_path, str):
        first = input_path.split(",")[0].strip()
    elif isinstance(input_path, list | tuple) and input_path:
        first = str(input_path[0])
    else:
        first = ""
    return Path(first).parent.absolute() if first else None  # absolute: the card travels with the export


def _metric(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
