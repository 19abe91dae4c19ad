"""ImageRecord -> tf.Example in the TF Object Detection API layout (read by official.vision).

This is the one place where pixel boxes become normalized coordinates. Keys written:
image/encoded, image/format, image/height, image/width, image/filename, image/source_id (a
numeric string: official.vision's evaluator turns it into an int64 image id),
image/object/bbox/{xmin,xmax,ymin,ymax} (normalized to [0, 1]), image/object/class/label
(label-map id, from 1), image/object/class/text, image/object/area (pixels),
image/object/is_crowd, image/object/difficult, image/object/truncated.
"""

from __future__ import annotations

import tensorflow as tf

from tfrecords_gen.encode import EncodedImage
from tfrecords_gen.records import ImageRecord


def normalized_boxes(record: ImageRecord) -> dict[str, list[float]]:
    """Pixel xyxy boxes of `record` as the four normalized coordinate lists of the OD API."""
    return {
        "xmin": [box.x_min / record.width for box in record.boxes],
        "xmax": [box.x_max / record.width for box in record.boxes],
        "ymin": [box.y_min / record.height for box in record.boxes],
        "ymax": [box.y_max / record.height for box in record.boxes],
    }


def build_example(
    record: ImageRecord, encoded: EncodedImage, source_id: int, label_map: dict[str, int]
) -> tf.train.Example:
    boxes_norm = normalized_boxes(record)
    features = {
        "image/encoded": _bytes([encoded.data]),
        "image/format": _bytes([encoded.format.encode()]),
        "image/height": _ints([record.height]),
        "image/width": _ints([record.width]),
        "image/filename": _bytes([record.name.encode()]),
        "image/source_id": _bytes([str(source_id).encode()]),
        **{f"image/object/bbox/{key}": _floats(values) for key, values in boxes_norm.items()},
        "image/object/class/label": _ints([label_map[box.label] for box in record.boxes]),
        "image/object/class/text": _bytes([box.label.encode() for box in record.boxes]),
        "image/object/area": _floats([box.area for box in record.boxes]),
        "image/object/is_crowd": _ints([int(box.is_crowd) for box in record.boxes]),
        "image/object/difficult": _ints([int(box.difficult) for box in record.boxes]),
        "image/object/truncated": _ints([int(box.truncated) for box in record.boxes]),
    }
    return tf.train.Example(features=tf.train.Features(feature=features))


def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values: list[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))
