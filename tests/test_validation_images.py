"""TensorBoard validation panels: true boxes left, confident predictions right, in model-input pixels."""

from __future__ import annotations

import numpy as np

from cervical_tf.inference.outputs import class_color
from cervical_tf.training.validation_images import side_by_side

SIZE = 96


def test_side_by_side_draws_truth_left_and_confident_predictions_right() -> None:
    images = np.zeros((1, SIZE, SIZE, 3), np.float32)  # normalized zeros: the ImageNet mean colour
    labels = {
        # A true box in ORIGINAL pixels; the model input is that image at scale 0.5.
        "groundtruths": {
            "num_detections": np.array([1]),
            "boxes": np.array([[[20, 20, 60, 60]]], np.float32),
            "classes": np.array([[1]]),
        },
        "image_info": np.array([[[2 * SIZE, 2 * SIZE], [SIZE, SIZE], [0.5, 0.5], [0, 0]]], np.float32),
    }
    outputs = {  # predictions in model-input pixels: one confident, one below MIN_SCORE_SHOWN
        "num_detections": np.array([2]),
        "detection_boxes": np.array([[[10, 10, 30, 30], [50, 50, 90, 90]]], np.float32),
        "detection_scores": np.array([[0.9, 0.2]], np.float32),
        "detection_classes": np.array([[1, 2]]),
    }
    panels = side_by_side(images, labels, outputs, {1: "NILM", 2: "LSIL"})
    assert panels.shape == (1, SIZE, 2 * SIZE, 3) and panels.dtype == np.uint8
    left, right = panels[0, :, :SIZE], panels[0, :, SIZE:]
    background = left[SIZE - 2, SIZE // 2]
    assert tuple(left[29, 20]) == class_color(1)  # the true box scaled by 0.5: its bottom edge at y 30
    assert tuple(right[29, 20]) == class_color(1)  # the confident prediction's bottom edge
    assert tuple(right[89, 70]) == tuple(background)  # the low-score prediction is not drawn
