"""A stand-in SavedModel that finds dark blobs (nuclei) from the pixels, for slide tests that must
not train: deterministic, local, and in the export's serving signature.

Darkness (255 - the channel mean) is averaged over 9 x 9 px; a pixel whose average is the largest
within 49 x 49 px and above `THRESHOLD` is a nucleus: a 64 x 64 box around it (CRIC's cell box),
score darkness / 255, class 2 "dark" above `DARK` else 1 "grey". Outside the image counts as white
glass, so a field alone and the same field on a slide (surrounded by glass) give the same boxes,
and a detection depends only on the pixels within 28 px of its centre (a tile's seams matter
only near its edges, which the centre-in-core rule leaves to the neighbouring tile). Peaks are at
least 25 px apart, so no two boxes overlap by IoU > 0.44 and NMS never removes a true blob.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

BLUR = 4  # half-width of the averaging window
PEAK = 24  # half-width of the local-maximum window
HALF_BOX = 32
THRESHOLD = 110.0
DARK = 150.0
ROWS = 300  # outputs padded to this many rows, like a real export's max_total_size


class BlobDetector(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        image = tf.cast(input_tensor[0], tf.float32)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        darkness = 255.0 - tf.reduce_mean(image, axis=-1)
        margin = BLUR + PEAK
        padded = tf.pad(darkness, [[margin, margin], [margin, margin]])[tf.newaxis, :, :, tf.newaxis]
        blurred = _pool(padded, BLUR, tf.nn.avg_pool2d)
        peaks = _pool(blurred, PEAK, tf.nn.max_pool2d)[0, :, :, 0]
        centre = blurred[0, PEAK : PEAK + height, PEAK : PEAK + width, 0]
        found = tf.where((centre >= peaks) & (centre > THRESHOLD))
        values = tf.gather_nd(centre, found)
        order = tf.argsort(values, direction="DESCENDING", stable=True)[:ROWS]
        found, values = tf.gather(found, order), tf.gather(values, order)
        y, x = tf.cast(found[:, 0], tf.float32), tf.cast(found[:, 1], tf.float32)
        size = tf.cast(tf.stack([height, width, height, width]), tf.float32)
        corners = tf.stack([y - HALF_BOX, x - HALF_BOX, y + HALF_BOX + 1, x + HALF_BOX + 1], axis=1)
        boxes = tf.clip_by_value(corners / size, 0.0, 1.0)
        classes = tf.where(values > DARK, 2.0, 1.0)
        count = tf.shape(values)[0]
        padding = ROWS - count
        return {
            "detection_boxes": tf.pad(boxes, [[0, padding], [0, 0]])[tf.newaxis],
            "detection_scores": tf.pad(values / 255.0, [[0, padding]])[tf.newaxis],
            "detection_classes": tf.pad(classes, [[0, padding]])[tf.newaxis],
            "num_detections": tf.cast(count, tf.float32)[tf.newaxis],
        }


def _pool(image: tf.Tensor, half: int, pool: object) -> tf.Tensor:
    """A (2 half + 1)-square VALID pooling, done as a row pass then a column pass."""
    rows = pool(image, ksize=[1, 2 * half + 1], strides=1, padding="VALID")
    return pool(rows, ksize=[2 * half + 1, 1], strides=1, padding="VALID")


def write_blob_export(export_dir: Path) -> Path:
    """EXPORT_DIR/saved_model + label_map.pbtxt (1 grey, 2 dark), without a model card."""
    module = BlobDetector()
    tf.saved_model.save(module, str(export_dir / "saved_model"), signatures={"serving_default": module.serve})
    (export_dir / "label_map.pbtxt").write_text(
        "item {\n  id: 1\n  name: 'grey'\n}\nitem {\n  id: 2\n  name: 'dark'\n}\n", encoding="utf-8"
    )
    return export_dir
