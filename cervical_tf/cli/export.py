"""`cervical-tf export` (= `python -m cervical_tf.exporter_main_v2`): the OD API exporter's flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cervical_tf.errors import DataError
from cervical_tf.export.signature import INPUT_TYPES


def add_parser(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "export",
        help="export a trained checkpoint as a SavedModel (TF OD API signature)",
        description="Write OUTPUT/saved_model (serving_default: input_tensor uint8 [1,H,W,3] -> "
        "detection_boxes normalized [ymin,xmin,ymax,xmax] of the original image, detection_scores, "
        "detection_classes, num_detections), OUTPUT/checkpoint, OUTPUT/params.yaml, OUTPUT/label_map.pbtxt, "
        "OUTPUT/model_card.json (training data, classes and boxes, recipe, steps, validation AP). "
        "The model is built from MODEL_DIR/params.yaml, the config training wrote.",
    )
    add_exporter_flags(parser)
    parser.set_defaults(handler=run)


def add_exporter_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the OD API's exporter_main_v2.py, plus --data and --params_override."""
    parser.add_argument(
        "--pipeline_config_path",
        type=Path,
        help="optional: the experiment YAML trained, checked against MODEL_DIR/params.yaml (a model "
        "field that differs is an error); needed only for a model dir without params.yaml",
    )
    parser.add_argument(
        "--trained_checkpoint_dir",
        type=Path,
        required=True,
        help="the training --model_dir (its latest checkpoint is exported)",
    )
    parser.add_argument("--output_directory", type=Path, required=True, help="e.g. exported_models/NAME")
    parser.add_argument("--input_type", choices=tuple(INPUT_TYPES), default="image_tensor")
    parser.add_argument(
        "--data",
        type=Path,
        help="the converted folder trained on (label map); default: the label map training "
        "copied into --trained_checkpoint_dir",
    )
    parser.add_argument(
        "--params_override",
        help="optional, checked like --pipeline_config_path; only task.model.detection_generator.* "
        "(post-processing: score threshold, NMS, max detections) may differ from training",
    )
    parser.add_argument("--alsologtostderr", action="store_true")


def run(args: argparse.Namespace) -> None:
    from cervical_tf.training.logs import quiet_logs

    quiet_logs(args.alsologtostderr)
    from cervical_tf.export.config import ExportConfigRequest, export_config, model_dir_of
    from cervical_tf.export.model_card import ModelCard, warn_if_synthetic
    from cervical_tf.export.saved_model import ExportRequest, export

    label_map_path = _label_map(args.data, model_dir_of(args.trained_checkpoint_dir))
    resolved = export_config(
        ExportConfigRequest(
            args.trained_checkpoint_dir, label_map_path, args.pipeline_config_path, args.params_override
        )
    )
    for note in resolved.notes:
        print(f"note: {note}", file=sys.stderr)
    output = export(
        resolved.params,
        ExportRequest(
            args.trained_checkpoint_dir,
            args.output_directory,
            label_map_path,
            args.input_type,
            args.pipeline_config_path,
        ),
    )
    print(
        f"wrote {output}/saved_model (signature serving_default, input {args.input_type}), "
        f"{output}/checkpoint, {output}/params.yaml, {output}/label_map.pbtxt, {output}/model_card.json"
    )
    card = ModelCard.load(output)
    print(f"model card: {card.summary}")
    warn_if_synthetic(card)


def _label_map(data_dir: Path | None, model_dir: Path) -> Path:
    candidate = (data_dir or model_dir) / "label_map.pbtxt"
    if not candidate.is_file():
        raise DataError(f"{candidate}: not found; pass --data with the folder `cervical-tf convert` wrote")
    return candidate
