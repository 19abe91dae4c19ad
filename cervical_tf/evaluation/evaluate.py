"""`cervical-tf evaluate`'s work: run an exported model over annotated images, score, write a report.

`evaluate_model` predicts (the only part that needs the Predictor, imported inside it); the
metrics live in `evaluate_detections`, a function of ground truth and hand-buildable
`Detections`; `report.write_report` turns its dict into report.json, report.md and the plots.
Nothing here imports TensorFlow at module import, so `cervical-tf --help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from cervical_tf.boxes import EVALUATE_AGNOSTIC_NMS
from cervical_tf.errors import DataError
from cervical_tf.evaluation import metrics, screening
from cervical_tf.evaluation.ground_truth import (
    GroundTruthImage,
    class_id_map,
    open_ground_truth,
    with_class_ids,
)
from cervical_tf.evaluation.report import summary_lines, write_report
from cervical_tf.export.model_card import warn_if_synthetic
from cervical_tf.inference.abnormal import abnormal_classes
from cervical_tf.inference.detections import Detections

# Every detection the export returns is scored, as training's validation scores every row of the
# model's output (its max_num_detections); COCOeval itself then keeps 100 per image and class.
EVERY_DETECTION = sys.maxsize


def evaluate_model(
    model: Path,
    data: Sequence[str],
    output: Path,
    *,
    images: Path | None = None,
    abnormal_names: str | None = None,
    min_score: float = 0.5,
    tile: int | None = None,
    overlap: int = 128,
    agnostic_nms: bool = EVALUATE_AGNOSTIC_NMS,
) -> None:
    """Load ground truth (`data`: TFRecord globs or one COCO JSON with `images`) and the model,
    predict every image (progress bar), write the report folder `output` and print its summary.
    The report carries the export's model card ("model_card"), its warning first."""
    from tqdm import tqdm

    from cervical_tf.inference.predictor import Predictor  # deferred: loads TensorFlow and the SavedModel

    if not 0.0 <= min_score <= 1.0:
        raise DataError(f"--min-score: expected a score in [0, 1], got {min_score}")
    source = open_ground_truth(data, images)
    predictor = Predictor.load(model)
    print(f"model: {predictor.model_card.summary}")
    labels = dict(sorted(predictor.labels.items()))
    abnormal, reason = abnormal_classes(abnormal_names, labels)
    id_map = class_id_map(source.labels, labels, source.description)
    ground_truth: list[GroundTruthImage] = []
    detections: list[Detections] = []
    progress = tqdm(source.images(), total=source.image_count, desc="evaluate: predicting", unit="image")
    for truth, pixels in progress:
        ground_truth.append(with_class_ids(truth, id_map, source.description))
        detections.append(
            predictor.predict(
                pixels,
                truth.name,
                tile=tile,
                overlap=overlap,
                agnostic_nms=agnostic_nms,
                max_detections=EVERY_DETECTION,
                min_score=0.0,
            )
        )
    report = evaluate_detections(
        ground_truth, detections, labels, abnormal, min_score, abnormal_reason=reason
    )
    report["inputs"] = {
        "model": str(model),
        "data": source.description,
        "tile": tile,
        "overlap": overlap if tile else None,
        "agnostic_nms": agnostic_nms,
    }
    report["model_card"] = predictor.model_card.as_json()
    written = write_report(report, output)
    print("\n".join(summary_lines(report)))
    print(f"wrote {', '.join(str(path) for path in written)}")
    warn_if_synthetic(predictor.model_card)


def evaluate_detections(
    ground_truth: Sequence[GroundTruthImage],
    detections: Sequence[Detections],
    labels: dict[int, str],
    abnormal: set[str],
    min_score: float,
    *,
    abnormal_reason: str | None = None,
) -> dict:
    """All metrics of `detections` against `ground_truth` (paired by position, same image names).

    labels: label-map id (from 1) -> class name, the classes reported; abnormal: class names for
    the screening section; min_score: the operating point of the confusion matrix and the
    image-level calls (the COCO metrics and the FROC use every detection). Crowd regions are
    counted apart from the boxes to find (see `metrics`). Returns the report dict written to
    report.json; metrics a subset of the data cannot define are None.
    """
    _check_inputs(ground_truth, detections, labels, abnormal)
    labels = dict(sorted(labels.items()))
    coco = metrics.coco_metrics(ground_truth, detections, labels)
    all_truth_ids = [int(class_id) for truth in ground_truth for class_id in truth.without_crowd().class_ids]
    all_found_ids = [int(class_id) for found in detections for class_id in found.class_ids]
    per_class = {
        name: {
            "class_id": class_id,
            "ground_truth_boxes": all_truth_ids.count(class_id),
            "detections": all_found_ids.count(class_id),
            **coco["per_class"][name],
        }
        for class_id, name in labels.items()
    }
    abnormal_ids = {class_id for class_id, name in labels.items() if name in abnormal}
    image_level = screening.image_level_screening(ground_truth, detections, abnormal_ids, min_score)
    return {
        "images": len(ground_truth),
        "ground_truth_boxes": len(all_truth_ids),
        "crowd_regions": sum(int(truth.is_crowd.sum()) for truth in ground_truth),
        "detections": len(all_found_ids),
        "min_score": min_score,
        "iou_threshold": screening.IOU_THRESHOLD,
        "AP": coco["AP"],
        "AP50": coco["AP50"],
        "AP75": coco["AP75"],
        "AR100": coco["AR100"],
        "per_class": per_class,
        "pr_curves": coco["pr_curves"],
        "confusion_matrix": screening.confusion_matrix(ground_truth, detections, labels, min_score),
        "abnormal": {
            "classes": [name for name in labels.values() if name in abnormal],
            "chosen_by": abnormal_reason or "given by the caller",
            "image_level": image_level if abnormal_ids else None,
            "froc": screening.froc_points(ground_truth, detections, abnormal_ids) if abnormal_ids else None,
        },
    }


def _check_inputs(
    ground_truth: Sequence[GroundTruthImage],
    detections: Sequence[Detections],
    labels: dict[int, str],
    abnormal: set[str],
) -> None:
    if not ground_truth:
        raise DataError("no images to evaluate: the ground truth is empty")
    if [truth.name for truth in ground_truth] != [found.image for found in detections]:
        raise ValueError("detections must be given in the order of the ground truth, one per image")
    seen: dict[int, str] = {}
    for truth in ground_truth:
        if truth.image_id in seen:
            raise DataError(
                f"images {seen[truth.image_id]!r} and {truth.name!r} share image id {truth.image_id}"
            )
        seen[truth.image_id] = truth.name
        unknown = set(truth.class_ids.tolist()) - set(labels)
        if unknown:
            raise DataError(f"{truth.name}: class ids {sorted(unknown)} are not in the label map {labels}")
    unknown_found = {int(class_id) for found in detections for class_id in found.class_ids} - set(labels)
    if unknown_found:
        raise ValueError(f"detections carry class ids {sorted(unknown_found)} outside the label map {labels}")
    if not abnormal <= set(labels.values()):
        raise DataError(
            f"abnormal classes {sorted(abnormal - set(labels.values()))} are not in the label map"
        )
