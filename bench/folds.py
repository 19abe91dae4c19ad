"""The k-fold benchmarks' shared scoring (agnostic_nms.py, learn_real.py): predict a held-out fold,
then score the held-out images of all folds together, per class and with the classes merged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np


def predict_fold(export: Path, fold_data: Path, agnostic: bool) -> list:
    """(ground truth, detections, labels) of every held-out image of one fold, labels in the model's ids."""
    from cervical_tf.evaluation.ground_truth import class_id_map, open_ground_truth, with_class_ids
    from cervical_tf.inference.predictor import Predictor

    predictor = Predictor.load(export)
    source = open_ground_truth([str(fold_data / "val-*.tfrecord")])
    id_map = class_id_map(source.labels, predictor.labels, source.description)
    pairs = []
    for truth, pixels in source.images():
        found = predictor.predict(
            pixels, truth.name, max_detections=100, min_score=0.0, agnostic_nms=agnostic
        )
        pairs.append((with_class_ids(truth, id_map, source.description), found, predictor.labels))
    return pairs


def pooled(pairs: list) -> tuple[list, list, dict[int, str]]:
    """(ground truth, detections, labels) of `predict_fold`'s pairs of several folds, scored as one
    set: image ids renumbered in order, as they must be unique across folds."""
    truths = [replace(truth, image_id=index) for index, (truth, _, _) in enumerate(pairs, start=1)]
    return truths, [detections for _, detections, _ in pairs], pairs[0][2]


def class_agnostic(truths: list, found: list) -> dict:
    """COCO metrics with every class merged into one, "cell": does the model find the cells at all."""
    from cervical_tf.evaluation.metrics import coco_metrics

    return coco_metrics(
        [replace(truth, class_ids=np.ones_like(truth.class_ids)) for truth in truths],
        [replace(detections, class_ids=np.ones_like(detections.class_ids)) for detections in found],
        {1: "cell"},
    )
