"""COCO metrics (pycocotools) as plain functions of ground truth and detections (no TensorFlow).

Every function here and in `screening.py` takes `GroundTruthImage`s and `Detections` paired by
position (the same image at the same index), boxes in original-image pixels
`[x_min, y_min, x_max, y_max]` and 1-based label-map class ids. Definitions (also stated in report.md):

- COCO metrics: pycocotools' COCOeval ("bbox", 101 recall points, IoU 0.50:0.05:0.95, up to 100
  detections per image and class). Per-class numbers are slices of `eval["precision"]` (and
  `eval["recall"]`) at that class's index, area "all", 100 detections; `None` for a class without
  ground truth, where COCOeval leaves -1. Rounded to 6 decimals.
- Crowd regions (`GroundTruthImage.is_crowd`) are COCOeval's: never a box to find or to miss.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence

import numpy as np

from cervical_tf import boxes
from cervical_tf.evaluation.ground_truth import GroundTruthImage
from cervical_tf.inference.detections import Detections

DECIMALS = 6  # COCO metrics are rounded to this many decimals (a mean of 101 ones is not exactly 1.0)

logger = logging.getLogger(__name__)


def coco_metrics(
    ground_truth: Sequence[GroundTruthImage], detections: Sequence[Detections], labels: dict[int, str]
) -> dict:
    """COCO AP/AP50/AP75/AR100 overall and per class, and per-class PR curves at IoU 0.5.

    Returns {"AP", "AP50", "AP75", "AR100": float | None, "per_class": {name: {"AP", "AP50",
    "AP75", "AR100"}}, "pr_curves": {name: {"recall": [...], "precision": [...]}}}; a class
    without ground truth gets None metrics and no curve. pycocotools' prints go to the log.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        coco_truth = _coco_from_dataset(COCO, _coco_ground_truth(ground_truth, labels))
        results = _coco_results(ground_truth, detections)
        coco_results = (
            coco_truth.loadRes(results)
            if results
            else _coco_from_dataset(COCO, {**coco_truth.dataset, "annotations": []})
        )
        evaluation = COCOeval(coco_truth, coco_results, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    logger.debug("pycocotools:\n%s", printed.getvalue())

    stats = [None if value < 0 else round(float(value), DECIMALS) for value in evaluation.stats]
    precision = evaluation.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    recall = evaluation.eval["recall"]  # [IoU thresholds, classes, areas, max dets]
    iou_50 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.5)))
    per_class_by_id = per_class_metrics(evaluation)
    per_class, pr_curves = {}, {}
    for index, class_id in enumerate(evaluation.params.catIds):
        class_precision = precision[:, :, index, 0, -1]
        per_class[labels[class_id]] = per_class_by_id[class_id]
        if recall[iou_50, index, 0, -1] >= 0:
            reached = evaluation.params.recThrs <= recall[iou_50, index, 0, -1] + 1e-9
            pr_curves[labels[class_id]] = {
                "recall": [float(value) for value in evaluation.params.recThrs[reached]],
                "precision": [float(value) for value in class_precision[iou_50][reached]],
            }
    return {
        "AP": stats[0],
        "AP50": stats[1],
        "AP75": stats[2],
        "AR100": stats[8],
        "per_class": per_class,
        "pr_curves": pr_curves,
    }


def per_class_metrics(evaluation) -> dict[int, dict[str, float | None]]:
    """Category id -> {"AP", "AP50", "AP75", "AR100"} of an accumulated pycocotools COCOeval.

    Slices `eval['precision']` and `eval['recall']` at the class (area all, the largest maxDets);
    None where the class has no ground truth (COCOeval's -1).
    """
    precision = evaluation.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    recall = evaluation.eval["recall"]  # [IoU thresholds, classes, areas, max dets]
    iou_50 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.5)))
    iou_75 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.75)))
    metrics = {}
    for index, class_id in enumerate(evaluation.params.catIds):
        class_precision = precision[:, :, index, 0, -1]
        metrics[class_id] = {
            "AP": _mean_defined(class_precision),
            "AP50": _mean_defined(class_precision[iou_50]),
            "AP75": _mean_defined(class_precision[iou_75]),
            "AR100": _mean_defined(recall[:, index, 0, -1]),
        }
    return metrics


def _coco_ground_truth(ground_truth: Sequence[GroundTruthImage], labels: dict[int, str]) -> dict:
    """The COCO ground-truth dataset dict (boxes [x, y, width, height] pixels, crowd regions iscrowd 1)."""
    images, annotations = [], []
    for truth in ground_truth:
        images.append(
            {"id": truth.image_id, "file_name": truth.name, "width": truth.width, "height": truth.height}
        )
        bboxes = boxes.xyxy_to_xywh(truth.boxes_px).tolist()
        for bbox, class_id, crowd in zip(
            bboxes, truth.class_ids.tolist(), truth.is_crowd.tolist(), strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": truth.image_id,
                    "category_id": class_id,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": class_id, "name": name} for class_id, name in sorted(labels.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def _coco_results(ground_truth: Sequence[GroundTruthImage], detections: Sequence[Detections]) -> list[dict]:
    """Detections as COCO results: {"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}."""
    results = []
    for truth, found in zip(ground_truth, detections, strict=True):
        bboxes = boxes.xyxy_to_xywh(found.boxes_px).tolist()
        for bbox, score, class_id in zip(
            bboxes, found.scores.tolist(), found.class_ids.tolist(), strict=True
        ):
            results.append(
                {"image_id": truth.image_id, "category_id": class_id, "bbox": bbox, "score": score}
            )
    return results


def _coco_from_dataset(coco_class: type, dataset: dict):
    coco = coco_class()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _mean_defined(values: np.ndarray) -> float | None:
    """Mean of the entries COCOeval defined (>= 0); None when it left them all at -1 (no ground truth)."""
    defined = values[values > -1]
    return round(float(defined.mean()), DECIMALS) if defined.size else None
