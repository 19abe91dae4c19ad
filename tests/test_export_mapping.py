"""The exported graph maps official.vision's resized-input boxes back to the ORIGINAL image."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from official.core import exp_factory
from official.vision import registry_imports  # noqa: F401  (registers the experiment)

from cervical_tf.export.saved_model import OdApiDetectionModule

INPUT_SIZE = 256
# One box, in pixels of the 256 x 256 model input: [ymin, xmin, ymax, xmax].
BOX_IN_INPUT_PX = [10.0, 20.0, 110.0, 220.0]


class FixedBoxModel(tf.Module):
    """Stands in for the Faster R-CNN: always one class-3 box at BOX_IN_INPUT_PX, score 0.8."""

    def __call__(self, images, **kwargs):
        return self.call(images, **kwargs)

    def call(self, images, image_shape=None, anchor_boxes=None, training=False):
        batch = tf.shape(images)[0]
        return {
            "detection_boxes": tf.tile(tf.constant([[BOX_IN_INPUT_PX]]), [batch, 1, 1]),
            "detection_scores": tf.fill([batch, 1], 0.8),
            "detection_classes": tf.fill([batch, 1], 3),
            "num_detections": tf.fill([batch], 1),
        }


@pytest.fixture(scope="module")
def module() -> OdApiDetectionModule:
    params = exp_factory.get_exp_config("fasterrcnn_resnetfpn_coco")
    params.override({"task": {"model": {"num_classes": 4, "input_size": [INPUT_SIZE, INPUT_SIZE, 3]}}})
    return OdApiDetectionModule(
        params=params, batch_size=1, input_image_size=[INPUT_SIZE, INPUT_SIZE], model=FixedBoxModel()
    )


@pytest.mark.parametrize(("height", "width"), [(512, 768), (128, 128), (300, 1000)])
def test_export_boxes_are_normalized_to_the_original_image(module, height: int, width: int) -> None:
    outputs = module.serve(tf.zeros([1, height, width, 3], tf.uint8))
    # official.vision resizes keeping the aspect ratio to a rounded size, then pads to the input.
    scale = min(INPUT_SIZE / height, INPUT_SIZE / width)
    scale_y, scale_x = round(height * scale) / height, round(width * scale) / width
    ymin, xmin, ymax, xmax = BOX_IN_INPUT_PX
    expected = np.clip(
        [ymin / scale_y / height, xmin / scale_x / width, ymax / scale_y / height, xmax / scale_x / width],
        0,
        1,
    )
    np.testing.assert_allclose(outputs["detection_boxes"].numpy()[0, 0], expected, atol=1e-5)


def test_export_outputs_have_the_od_api_names_and_dtypes(module) -> None:
    outputs = module.serve(tf.zeros([1, 64, 80, 3], tf.uint8))
    assert set(outputs) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    assert {name: tensor.dtype for name, tensor in outputs.items()} == dict.fromkeys(outputs, tf.float32)
    assert outputs["detection_classes"].numpy().tolist() == [[3.0]]
    assert outputs["num_detections"].numpy().tolist() == [1.0]
