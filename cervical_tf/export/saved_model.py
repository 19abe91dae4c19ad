"""Export a trained checkpoint as a SavedModel with the TF Object Detection API's signature.

official.vision's `DetectionModule` builds the serving graph; the subclass below changes only
its outputs, because its Faster R-CNN returns boxes in resized-input pixels plus `image_info`,
while the OD API ecosystem (and TensorFlow Serving clients written for it) expects
`detection_boxes` normalized [ymin, xmin, ymax, xmax] relative to the ORIGINAL image.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
from official.vision.serving import detection, export_saved_model_lib

from cervical_tf.errors import DataError
from cervical_tf.export.config import model_dir_of
from cervical_tf.export.model_card import MODEL_CARD, ModelCard, write_model_card
from cervical_tf.export.provenance import model_card_facts
from cervical_tf.export.signature import INPUT_NAME, INPUT_TYPES, SIGNATURE
from tfrecords_gen.atomic import atomic_folder
from tfrecords_gen.label_map import read_label_map


class OdApiDetectionModule(detection.DetectionModule):
    """official.vision's detection export with OD API outputs (see the module docstring)."""

    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = super().serve(images)
        normalized = self._normalize_coordinates(outputs, ["detection_boxes"], outputs["image_info"])
        return {
            "detection_boxes": normalized["detection_boxes"],
            "detection_scores": outputs["detection_scores"],
            # The OD API returns class ids and counts as float32; its clients cast them.
            "detection_classes": tf.cast(outputs["detection_classes"], tf.float32),
            "num_detections": tf.cast(outputs["num_detections"], tf.float32),
        }


@dataclass(frozen=True)
class ExportRequest:
    trained_checkpoint_dir: Path
    output_directory: Path
    label_map_path: Path
    input_type: str = "image_tensor"
    pipeline_config_path: Path | None = None  # recorded in the model card's recipe when given


def export(params, request: ExportRequest) -> Path:
    """Write OUTPUT/saved_model, OUTPUT/checkpoint, OUTPUT/params.yaml, OUTPUT/label_map.pbtxt and
    OUTPUT/model_card.json (what the model learned from: `model_card`)."""
    if request.input_type not in INPUT_TYPES:
        raise DataError(f"--input_type {request.input_type!r}: expected one of {', '.join(INPUT_TYPES)}")
    checkpoint = request.trained_checkpoint_dir
    checkpoint_path = tf.train.latest_checkpoint(str(checkpoint)) if checkpoint.is_dir() else str(checkpoint)
    if not checkpoint_path:
        raise DataError(f"--trained_checkpoint_dir {checkpoint}: no checkpoint found (expected ckpt-N files)")
    card = model_card_facts(
        params,
        checkpoint_path,
        model_dir_of(checkpoint),
        read_label_map(request.label_map_path),
        request.pipeline_config_path,
    )
    output = request.output_directory
    function_key = INPUT_TYPES[request.input_type]
    refusal = "exists and is not an earlier export; choose another --output_directory"
    with atomic_folder(output, lambda folder: (folder / "saved_model").is_dir(), refusal) as staging:
        module = OdApiDetectionModule(
            params=params,
            batch_size=1,
            input_image_size=list(params.task.model.input_size[:2]),
            input_type=function_key,
            num_channels=3,
            input_name=INPUT_NAME,
        )
        export_saved_model_lib.export_inference_graph(
            input_type=function_key,
            batch_size=1,
            input_image_size=list(params.task.model.input_size[:2]),
            params=params,
            checkpoint_path=checkpoint_path,
            export_dir=str(staging),
            export_module=module,
            export_checkpoint_subdir="checkpoint",
            export_saved_model_subdir="saved_model",
            input_name=INPUT_NAME,
            function_keys={function_key: SIGNATURE},
        )
        shutil.copyfile(request.label_map_path, staging / "label_map.pbtxt")
        write_model_card(staging / MODEL_CARD, ModelCard(card, staging / MODEL_CARD))
    return output
