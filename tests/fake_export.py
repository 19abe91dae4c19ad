"""A stand-in SavedModel obeying `cervical-tf export`'s contract, for tests that must not train.

It "detects" the extent of the dark pixels (channel mean < 60) as class 2 and of the grey pixels
(60 <= mean < 120) as class 1, so tests know exactly which boxes a correct pipeline returns.
With `seconds_per_call`, every call first sleeps that long (idle, not computing), so server tests
can make work long without loading the shared CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from cervical_tf.export.model_card import MODEL_CARD, ModelCard, write_model_card

FAKE_ROWS = 5  # the fake model pads its outputs to this many rows, like a real export's max_total_size


class DarkAndGreyDetector(tf.Module):
    """Finds the extent of the dark pixels as class 2 (score 0.9) and of the grey pixels as class 1
    (score `grey_score`), in the export's output format, after sleeping `seconds_per_call`."""

    def __init__(self, grey_score: float, seconds_per_call: float = 0.0) -> None:
        super().__init__()
        self._scores = tf.constant([0.9, grey_score])
        self._pause_us = round(seconds_per_call * 1_000_000)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        if self._pause_us:  # an empty dataset that sleeps once: a graph op, so it survives saving
            # TensorFlow's own test helper (not public API): imported here, so only the slow mode needs it.
            from tensorflow.python.data.experimental.ops.testing import sleep

            pause = (
                tf.data.Dataset.range(0).apply(sleep(self._pause_us)).reduce(tf.constant(0, tf.int64), tf.add)
            )
            input_tensor += tf.cast(pause, tf.uint8)  # adds 0, but makes the model wait for the pause
        brightness = tf.reduce_mean(tf.cast(input_tensor[0], tf.float32), axis=-1)
        dark_box, dark_found = _extent(brightness < 60)
        grey_box, grey_found = _extent((brightness >= 60) & (brightness < 120))
        found = tf.stack([dark_found, grey_found])
        boxes = tf.boolean_mask(tf.stack([dark_box, grey_box]), found)
        scores = tf.boolean_mask(self._scores, found)
        classes = tf.boolean_mask(tf.constant([2.0, 1.0]), found)
        count = tf.shape(scores)[0]
        padding = FAKE_ROWS - count
        return {
            "detection_boxes": tf.pad(boxes, [[0, padding], [0, 0]])[tf.newaxis],
            "detection_scores": tf.pad(scores, [[0, padding]])[tf.newaxis],
            "detection_classes": tf.pad(classes, [[0, padding]])[tf.newaxis],
            "num_detections": tf.cast(count, tf.float32)[tf.newaxis],
        }


def _extent(mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Normalized [ymin, xmin, ymax, xmax] (exclusive max) of the True pixels of mask [H, W], and any()."""
    height, width = tf.shape(mask)[0], tf.shape(mask)[1]
    rows = tf.cast(tf.reduce_any(mask, axis=1), tf.int32)
    columns = tf.cast(tf.reduce_any(mask, axis=0), tf.int32)
    y_min = tf.argmax(rows, output_type=tf.int32)
    y_max = height - tf.argmax(rows[::-1], output_type=tf.int32)
    x_min = tf.argmax(columns, output_type=tf.int32)
    x_max = width - tf.argmax(columns[::-1], output_type=tf.int32)
    size = tf.cast(tf.stack([height, width, height, width]), tf.float32)
    return tf.cast(tf.stack([y_min, x_min, y_max, x_max]), tf.float32) / size, tf.reduce_any(mask)


def write_fake_export(export_dir: Path, grey_score: float = 0.4, seconds_per_call: float = 0.0) -> Path:
    """EXPORT_DIR/saved_model + label_map.pbtxt (1 grey, 2 dark) as `cervical-tf export` writes them,
    without a model card (as an export made before model cards; see `add_model_card`)."""
    module = DarkAndGreyDetector(grey_score, seconds_per_call)
    tf.saved_model.save(module, str(export_dir / "saved_model"), signatures={"serving_default": module.serve})
    (export_dir / "label_map.pbtxt").write_text(
        "item {\n  id: 1\n  name: 'grey'\n}\nitem {\n  id: 2\n  name: 'dark'\n}\n", encoding="utf-8"
    )
    return export_dir


def add_model_card(export_dir: Path, synthetic_sample: str) -> Path:
    """EXPORT_DIR/model_card.json of `fake_model_card(synthetic_sample)`; returns EXPORT_DIR."""
    card = ModelCard(fake_model_card(synthetic_sample), export_dir / MODEL_CARD)
    write_model_card(card.path, card)
    return export_dir


def fake_model_card(synthetic_sample: str) -> dict:
    """Model card facts of a model trained 300 steps on /data/DATA (synthetic_sample "all" or "none")."""
    folder = "/data/sample" if synthetic_sample == "all" else "/data/cric"
    train = {"images": 8, "boxes": 40, "classes": {"grey": 25, "dark": 15}}
    val = {"images": 2, "boxes": 9, "classes": {"grey": 6, "dark": 3}}
    return {
        "card_version": 1,
        "exported": "2026-01-02T03:04:05+00:00",
        "project_version": "0.1.0",
        "classes": ["grey", "dark"],
        "training_data": {
            "folder": folder,
            "splits": {"train": train, "val": val},
            "synthetic_sample": synthetic_sample,
            "synthetic_images": {"train": 8, "val": 2} if synthetic_sample == "all" else None,
        },
        "pixel_size_um": None,
        "pixel_size_note": "unknown",
        "recipe": {
            "config": "recipe.yaml",
            "backbone": "resnet-18",
            "decoder": "fpn",
            "input_size": [512, 512, 3],
        },
        "training": {"steps": 300, "planned_steps": 300, "checkpoint": "ckpt-300"},
        "validation": {"step": 300, "AP": 0.25, "AP50": 0.5},
    }
