"""Matching-based metrics: confusion matrix, image-level screening and the abnormal-cell FROC.

Inputs as in `metrics.py` (ground truth and detections paired by position, pixel xyxy boxes,
1-based label-map ids). Matching is greedy in descending score order, each detection taking the
still-unmatched ground-truth box it overlaps most, if that IoU >= 0.5. Crowd regions
(`GroundTruthImage.is_crowd`) are handled as COCOeval handles them: never a box to find or to
miss; a detection that matches no cell but lies at least half inside a crowd region
(intersection over the detection's own area >= 0.5) is ignored, neither found nor false.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cervical_tf import boxes
from cervical_tf.evaluation.ground_truth import GroundTruthImage
from cervical_tf.inference.detections import Detections

IOU_THRESHOLD = 0.5
FP_PER_IMAGE_POINTS = (1, 2, 4)
BACKGROUND_ROW = "background (false positive)"
MISSED_COLUMN = "missed"


def confusion_matrix(
    ground_truth: Sequence[GroundTruthImage],
    detections: Sequence[Detections],
    labels: dict[int, str],
    min_score: float,
) -> dict:
    """Class confusion of detections scoring >= `min_score`, matched class-agnostically at IoU >= 0.5.

    Returns {"rows": class names + [BACKGROUND_ROW], "columns": class names + [MISSED_COLUMN],
    "counts": int [rows][columns]}: a matched detection counts at (its true class, its predicted
    class), an unmatched one at (background, predicted class), an unmatched ground-truth box at
    (true class, missed). Classes in label-map id order.
    """
    class_ids = sorted(labels)
    position = {class_id: index for index, class_id in enumerate(class_ids)}
    counts = np.zeros((len(class_ids) + 1, len(class_ids) + 1), dtype=np.int64)
    for truth, found in zip(ground_truth, detections, strict=True):
        kept = found.above(min_score)
        cells = truth.without_crowd()
        matches = greedy_match(cells.boxes_px, kept.boxes_px, kept.scores)
        in_crowd = inside_crowd(kept.boxes_px, truth.crowd_boxes_px)
        for detection_index, truth_index in enumerate(matches):
            if truth_index < 0 and in_crowd[detection_index]:
                continue
            row = len(class_ids) if truth_index < 0 else position[int(cells.class_ids[truth_index])]
            counts[row, position[int(kept.class_ids[detection_index])]] += 1
        for truth_index in sorted(set(range(len(cells.class_ids))) - set(matches)):
            counts[position[int(cells.class_ids[truth_index])], len(class_ids)] += 1
    names = [labels[class_id] for class_id in class_ids]
    return {"rows": [*names, BACKGROUND_ROW], "columns": [*names, MISSED_COLUMN], "counts": counts.tolist()}


def image_level_screening(
    ground_truth: Sequence[GroundTruthImage],
    detections: Sequence[Detections],
    abnormal_ids: set[int],
    min_score: float,
) -> dict:
    """Image-level sensitivity and specificity for "this image holds an abnormal cell".

    Truly abnormal: any ground-truth box of an abnormal class. Called abnormal: any detection of
    an abnormal class scoring >= `min_score`. Returns {"TP", "FN", "TN", "FP": int, "sensitivity",
    "specificity": float | None} (None when there are no abnormal, resp. normal, images).
    """
    counts = {"TP": 0, "FN": 0, "TN": 0, "FP": 0}
    for truth, found in zip(ground_truth, detections, strict=True):
        truly_abnormal = bool(np.isin(truth.class_ids, list(abnormal_ids)).any())
        kept = found.above(min_score)
        called_abnormal = bool(np.isin(kept.class_ids, list(abnormal_ids)).any())
        key = {(True, True): "TP", (True, False): "FN", (False, False): "TN", (False, True): "FP"}
        counts[key[truly_abnormal, called_abnormal]] += 1
    return {
        **counts,
        "sensitivity": _ratio(counts["TP"], counts["TP"] + counts["FN"]),
        "specificity": _ratio(counts["TN"], counts["TN"] + counts["FP"]),
    }


def froc_points(
    ground_truth: Sequence[GroundTruthImage],
    detections: Sequence[Detections],
    abnormal_ids: set[int],
    fp_per_image: Sequence[float] = FP_PER_IMAGE_POINTS,
) -> dict:
    """Cell-level recall of abnormal cells at `fp_per_image` false positives per image (FROC points).

    Only detections of abnormal classes take part (all scores), against only ground-truth boxes
    of abnormal classes, any-abnormal: an LSIL box found as ASC-US counts as found. Within each
    image, detections match greedily by score at IoU >= 0.5; the rest are false positives, except
    those inside a crowd region of an abnormal class, which are ignored. The
    score threshold then sweeps down over the distinct detection scores; at each point recall =
    matched abnormal boxes / all abnormal boxes and FP/image = false positives / images. For each
    k the value is the point furthest along the sweep (lowest threshold, so highest recall) whose
    FP/image <= k: {"recall", "fp_per_image", "score_threshold"}, or None when no sweep point
    qualifies (or there are no abnormal boxes or no abnormal detections).
    """
    scored: list[tuple[float, bool]] = []
    abnormal_boxes = 0
    for truth, found in zip(ground_truth, detections, strict=True):
        cells = truth.without_crowd()
        truth_is_abnormal = np.isin(cells.class_ids, list(abnormal_ids))
        found_is_abnormal = np.isin(found.class_ids, list(abnormal_ids))
        abnormal_boxes += int(truth_is_abnormal.sum())
        scores, found_boxes = found.scores[found_is_abnormal], found.boxes_px[found_is_abnormal]
        matches = greedy_match(cells.boxes_px[truth_is_abnormal], found_boxes, scores)
        abnormal_crowd = truth.crowd_boxes_px[np.isin(truth.class_ids[truth.is_crowd], list(abnormal_ids))]
        in_crowd = inside_crowd(found_boxes, abnormal_crowd)
        scored += [
            (float(score), match >= 0)
            for score, match, ignored in zip(scores, matches, in_crowd, strict=True)
            if match >= 0 or not ignored
        ]
    scored.sort(key=lambda item: -item[0])
    scores = np.array([score for score, _ in scored])
    true_positives = np.cumsum([is_match for _, is_match in scored])
    false_positives = np.cumsum([not is_match for _, is_match in scored])
    sweep = [
        index for index in range(len(scores)) if index + 1 == len(scores) or scores[index + 1] < scores[index]
    ]
    points: dict[str, dict | None] = {}
    for k in fp_per_image:
        within = [index for index in sweep if false_positives[index] / len(ground_truth) <= k]
        if not within or abnormal_boxes == 0:
            points[f"{k:g}"] = None
            continue
        index = within[-1]
        points[f"{k:g}"] = {
            "recall": float(true_positives[index] / abnormal_boxes),
            "fp_per_image": float(false_positives[index] / len(ground_truth)),
            "score_threshold": float(scores[index]),
        }
    return {"matching": "any-abnormal", "abnormal_boxes": abnormal_boxes, "points": points}


def greedy_match(
    truth_boxes_px: np.ndarray,
    found_boxes_px: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> list[int]:
    """For each detection (float32 [N, 4] pixel xyxy, scores [N]), the index of the ground-truth
    box (float32 [M, 4] pixel xyxy) it matches, or -1. Detections go in descending score order
    (stable on ties), each taking the unmatched box of highest IoU if that IoU >= `iou_threshold`.
    """
    overlaps = boxes.iou(found_boxes_px, truth_boxes_px)
    matches = [-1] * len(scores)
    taken = np.zeros(len(truth_boxes_px), dtype=bool)
    for detection_index in np.argsort(-np.asarray(scores), kind="stable"):
        if not len(truth_boxes_px):
            break
        candidates = np.where(taken, -1.0, overlaps[detection_index])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            matches[detection_index] = best
            taken[best] = True
    return matches


def inside_crowd(
    found_boxes_px: np.ndarray, crowd_boxes_px: np.ndarray, threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """bool [N]: detection (float32 [N, 4] pixel xyxy) lies at least `threshold` inside one of the
    crowd regions (float32 [C, 4]), measured as COCOeval measures overlap with a crowd region:
    intersection over the detection's own area."""
    if not len(found_boxes_px) or not len(crowd_boxes_px):
        return np.zeros(len(found_boxes_px), dtype=bool)
    top_left = np.maximum(found_boxes_px[:, np.newaxis, :2], crowd_boxes_px[np.newaxis, :, :2])
    bottom_right = np.minimum(found_boxes_px[:, np.newaxis, 2:], crowd_boxes_px[np.newaxis, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(found_boxes_px[:, 2:] - found_boxes_px[:, :2], axis=1)[:, np.newaxis]
    return ((intersection > 0) & (intersection >= threshold * area)).any(axis=1)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
