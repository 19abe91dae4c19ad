"""Box geometry written once: IoU, box-format conversions and non-maximum suppression.

Boxes inside the project are float pixels `[x_min, y_min, x_max, y_max]` of the original image
(`*_px`). COCO speaks `[x, y, width, height]` (`xywh`); the TF OD API's tf.Example and SavedModel
speak normalized `[y_min, x_min, y_max, x_max]` (`*_norm_yxyx`). Numpy only: the data side imports
this without TensorFlow.
"""

from __future__ import annotations

import numpy as np

NMS_IOU_THRESHOLD = 0.5
# Measured by bench/agnostic_nms.py on the real CRIC fields (bench/README.md): class-agnostic NMS
# removed every cell labelled twice (32 of 178 cells at /v1/detect's score 0.05) at equal
# class-agnostic AP50 (0.506), but per-class NMS scored the higher COCO AP50 (0.212 against 0.198).
# So the outputs that count cells (predict, serve) merge across classes by default, and evaluate,
# which reports COCO AP as training's validation does, keeps the model's own per-class NMS.
AGNOSTIC_NMS = True
EVALUATE_AGNOSTIC_NMS = False


def xyxy_to_xywh(boxes_px: np.ndarray) -> np.ndarray:
    """[N, 4] `[x_min, y_min, x_max, y_max]` -> float64 [N, 4] COCO `[x, y, width, height]`."""
    boxes = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """[N, 4] COCO `[x, y, width, height]` -> float64 [N, 4] `[x_min, y_min, x_max, y_max]`."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def norm_yxyx_to_px(boxes_norm_yxyx: np.ndarray, width: int, height: int) -> np.ndarray:
    """[N, 4] normalized `[y_min, x_min, y_max, x_max]` -> float32 [N, 4] pixel xyxy (width x height)."""
    boxes = np.asarray(boxes_norm_yxyx, dtype=np.float32).reshape(-1, 4)
    return (boxes[:, [1, 0, 3, 2]] * np.array([width, height, width, height], dtype=np.float32)).astype(
        np.float32
    )


def area(boxes_px: np.ndarray) -> np.ndarray:
    """Areas [N] of xyxy boxes [N, 4]; an inverted box has area 0."""
    boxes = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def intersection(boxes_a_px: np.ndarray, boxes_b_px: np.ndarray) -> np.ndarray:
    """Areas float64 [A, B] shared by xyxy boxes [A, 4] and [B, 4]."""
    boxes_a = np.asarray(boxes_a_px, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b_px, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    return np.clip(bottom_right - top_left, 0, None).prod(axis=2)


def iou(boxes_a_px: np.ndarray, boxes_b_px: np.ndarray) -> np.ndarray:
    """Intersection over union float64 [A, B] of xyxy boxes [A, 4] and [B, 4]; 0 where both are empty."""
    shared = intersection(boxes_a_px, boxes_b_px)
    union = area(boxes_a_px)[:, None] + area(boxes_b_px)[None, :] - shared
    return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)


def non_max_suppression(
    boxes_px: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    agnostic: bool = False,
) -> np.ndarray:
    """Indices (int64, by descending score) kept by greedy NMS.

    A box is dropped when a higher-scoring kept box overlaps it with IoU > iou_threshold: of the
    same class (per-class NMS, agnostic False) or of any class (agnostic True, Ultralytics'
    `agnostic_nms`: one cell keeps one label, its best-scoring one). boxes_px float [N, 4] xyxy,
    scores float [N], class_ids int [N]. In numpy rather than tf.image.non_max_suppression: the
    inputs are numpy already and N (tiles x detections) is small.
    """
    scores = np.asarray(scores)
    class_ids = np.asarray(class_ids)
    order = np.argsort(-scores, kind="stable")
    groups = [order] if agnostic else [order[class_ids[order] == value] for value in np.unique(class_ids)]
    kept: list[int] = []
    for candidates in groups:
        while len(candidates):
            best, candidates = candidates[0], candidates[1:]
            kept.append(int(best))
            candidates = candidates[iou(boxes_px[best], boxes_px[candidates])[0] <= iou_threshold]
    kept_array = np.array(kept, dtype=np.int64)
    return kept_array[np.argsort(-scores[kept_array], kind="stable")]
