"""True and predicted boxes drawn side by side on validation batches, for TensorBoard."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cervical_tf.inference.detections import Detections
from cervical_tf.inference.outputs import render_overlay

# Predictions drawn: those a user would keep (predict's default --min-score); the model returns
# every box above 0.05, which buries the picture under low-score boxes early in training.
MIN_SCORE_SHOWN = 0.5
# official.vision normalizes input images with the ImageNet mean and deviation (preprocess_ops).
_MEAN_RGB = np.array([0.485, 0.456, 0.406]) * 255
_STDDEV_RGB = np.array([0.229, 0.224, 0.225]) * 255


def side_by_side(
    images: np.ndarray, labels: Mapping[str, object], outputs: Mapping[str, np.ndarray], names: dict[int, str]
) -> np.ndarray:
    """uint8 [B, H, 2W, 3]: each model input with its true boxes (left) and predictions scoring at
    least MIN_SCORE_SHOWN (right).

    images: float [B, H, W, 3] normalized model inputs; labels: the task's eval labels (true boxes
    in original-image pixels, yxyx, and image_info); outputs: the model's eval outputs (boxes in
    model-input pixels, yxyx).
    """
    pixels = np.clip(images * _STDDEV_RGB + _MEAN_RGB, 0, 255).astype(np.uint8)
    truth = labels["groundtruths"]
    image_info = np.asarray(labels["image_info"])
    panels = []
    for index, image in enumerate(pixels):
        scale_yx = image_info[index, 2]
        true_count = int(np.asarray(truth["num_detections"])[index])
        true_boxes = np.asarray(truth["boxes"])[index, :true_count] * np.tile(scale_yx, 2)
        true_ids = np.asarray(truth["classes"])[index, :true_count].astype(np.int32)
        predicted_count = int(outputs["num_detections"][index])
        predicted = _detections(
            outputs["detection_boxes"][index, :predicted_count],
            outputs["detection_scores"][index, :predicted_count],
            outputs["detection_classes"][index, :predicted_count].astype(np.int32),
            image,
            names,
        ).above(MIN_SCORE_SHOWN)
        expected = _detections(true_boxes, np.ones(true_count, np.float32), true_ids, image, names)
        panels.append(
            np.concatenate(
                [render_overlay(image, expected, captions=expected.labels), render_overlay(image, predicted)],
                axis=1,
            )
        )
    return np.stack(panels)


def _detections(
    boxes_yxyx: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    image: np.ndarray,
    names: dict[int, str],
) -> Detections:
    boxes_px = np.asarray(boxes_yxyx, np.float32).reshape(-1, 4)[:, [1, 0, 3, 2]]
    return Detections(
        "validation",
        image.shape[1],
        image.shape[0],
        boxes_px,
        np.asarray(scores, np.float32),
        class_ids,
        tuple(names.get(int(class_id), str(class_id)) for class_id in class_ids),
    )
