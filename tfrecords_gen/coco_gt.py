"""COCO ground-truth JSON for a split, the file official.vision's and pycocotools' evaluators read.

Image ids equal the records' image/source_id, boxes are pixel [x, y, width, height].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cervical_tf.boxes import xyxy_to_xywh
from tfrecords_gen.atomic import atomic_path
from tfrecords_gen.records import ImageRecord


def coco_ground_truth(
    records: Sequence[ImageRecord], source_ids: dict[str, int], label_map: dict[str, int]
) -> dict:
    images, annotations = [], []
    for record in records:
        image_id = source_ids[record.name]
        images.append(
            {"id": image_id, "file_name": record.name, "width": record.width, "height": record.height}
        )
        bboxes = xyxy_to_xywh([(box.x_min, box.y_min, box.x_max, box.y_max) for box in record.boxes]).tolist()
        for box, bbox in zip(record.boxes, bboxes, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label_map[box.label],
                    "bbox": bbox,
                    "area": box.area,
                    "iscrowd": int(box.is_crowd),
                    "difficult": int(box.difficult),
                }
            )
    categories = [
        {"id": class_id, "name": label}
        for label, class_id in sorted(label_map.items(), key=lambda item: item[1])
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco_ground_truth(path: Path, ground_truth: dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(ground_truth), encoding="utf-8")
