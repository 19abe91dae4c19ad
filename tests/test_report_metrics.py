"""report_metrics: hand-built ground truth and detections whose metrics are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cervical_tf.boxes import iou as box_iou
from cervical_tf.evaluation.ground_truth import GroundTruthImage
from cervical_tf.evaluation.metrics import coco_metrics
from cervical_tf.evaluation.screening import (
    BACKGROUND_ROW,
    MISSED_COLUMN,
    confusion_matrix,
    froc_points,
    greedy_match,
    image_level_screening,
)
from cervical_tf.inference.abnormal import default_abnormal
from cervical_tf.inference.detections import Detections

LABELS = {1: "A", 2: "B"}


def truth(
    name: str,
    image_id: int,
    boxes: list[list[float]],
    class_ids: list[int],
    size: int = 300,
    crowd: list[bool] | None = None,
) -> GroundTruthImage:
    return GroundTruthImage(
        name,
        image_id,
        size,
        size,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(class_ids, np.int32),
        is_crowd=None if crowd is None else np.array(crowd, bool),
    )


def found(
    name: str, boxes: list[list[float]], scores: list[float], class_ids: list[int], size: int = 300
) -> Detections:
    labels = tuple(f"class {class_id}" for class_id in class_ids)
    return Detections(
        name,
        size,
        size,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(class_ids, np.int32),
        labels,
    )


def test_box_iou_of_known_overlaps() -> None:
    iou = box_iou(
        np.array([[0, 0, 100, 100]]), np.array([[25, 0, 125, 100], [0, 0, 100, 100], [200, 0, 210, 10]])
    )
    np.testing.assert_allclose(iou, [[0.6, 1.0, 0.0]])


def test_greedy_match_serves_the_highest_score_first() -> None:
    boxes = np.array([[0, 0, 100, 100]], np.float32)
    detections = np.array([[1, 1, 101, 101], [0, 0, 100, 100]], np.float32)
    assert greedy_match(boxes, detections, np.array([0.3, 0.9])) == [-1, 0]


def test_coco_metrics_perfect_detections_give_one_for_every_class() -> None:
    boxes = [[10, 10, 60, 60], [100, 100, 180, 150], [200, 20, 240, 90]]
    ground_truth = [truth("one.png", 1, boxes, [1, 2, 1]), truth("two.png", 2, boxes[:2], [2, 2])]
    detections = [
        found("one.png", boxes, [0.9, 0.8, 0.7], [1, 2, 1]),
        found("two.png", boxes[:2], [0.9, 0.6], [2, 2]),
    ]
    metrics = coco_metrics(ground_truth, detections, LABELS)
    assert (metrics["AP"], metrics["AP50"], metrics["AP75"], metrics["AR100"]) == (1.0, 1.0, 1.0, 1.0)
    for name in LABELS.values():
        assert metrics["per_class"][name]["AP"] == 1.0
        assert metrics["per_class"][name]["AP50"] == 1.0
        assert metrics["pr_curves"][name]["precision"][-1] == 1.0


def test_wrong_class_detection_fills_its_confusion_cell_and_halves_the_class_ap() -> None:
    # A at the top left, B at the bottom right. The 0.95 detection says A on the B cell: for class
    # A it is a false positive ranked above the true one, so precision is 1/2 at every recall
    # point (AP_A = 0.5); B is never found (AP_B = 0); the mean is 0.25.
    ground_truth = [truth("one.png", 1, [[10, 10, 60, 60], [100, 100, 160, 160]], [1, 2])]
    detections = [found("one.png", [[100, 100, 160, 160], [10, 10, 60, 60]], [0.95, 0.9], [1, 1])]
    metrics = coco_metrics(ground_truth, detections, LABELS)
    assert metrics["per_class"]["A"]["AP"] == pytest.approx(0.5)
    assert metrics["per_class"]["A"]["AP50"] == pytest.approx(0.5)
    assert metrics["per_class"]["B"]["AP"] == 0.0
    assert metrics["AP"] == pytest.approx(0.25)
    assert metrics["AR100"] == pytest.approx(0.5)  # A recalled, B not

    matrix = confusion_matrix(ground_truth, detections, LABELS, min_score=0.5)
    assert matrix["rows"] == ["A", "B", BACKGROUND_ROW]
    assert matrix["columns"] == ["A", "B", MISSED_COLUMN]
    assert matrix["counts"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_confusion_matrix_counts_background_and_missed_below_min_score() -> None:
    ground_truth = [truth("one.png", 1, [[10, 10, 60, 60], [100, 100, 160, 160]], [1, 2])]
    detections = [found("one.png", [[200, 200, 250, 250], [100, 100, 160, 160]], [0.9, 0.3], [2, 2])]
    matrix = confusion_matrix(ground_truth, detections, LABELS, min_score=0.5)
    # the 0.3 detection is below --min-score: B is missed, A is missed, the 0.9 one is background
    assert matrix["counts"] == [[0, 0, 1], [0, 0, 1], [0, 1, 0]]


def test_shifted_box_with_iou_0_6_counts_at_ap50_but_not_at_ap75() -> None:
    ground_truth = [truth("one.png", 1, [[0, 0, 100, 100]], [1])]
    detections = [found("one.png", [[25, 0, 125, 100]], [0.9], [1])]  # IoU 75 * 100 / (125 * 100) = 0.6
    metrics = coco_metrics(ground_truth, detections, {1: "A"})
    assert metrics["AP50"] == 1.0
    assert metrics["AP75"] == 0.0
    assert metrics["per_class"]["A"]["AP50"] == 1.0
    assert metrics["per_class"]["A"]["AP75"] == 0.0
    assert confusion_matrix(ground_truth, detections, {1: "A"}, 0.5)["counts"] == [[1, 0], [0, 0]]


def test_crowd_region_is_neither_found_nor_missed_and_detections_inside_it_are_ignored() -> None:
    # A crowd region of A (COCO iscrowd) and one B cell. Inside the region: a detection of the
    # whole region and one of a cell in it; elsewhere a false positive and the B cell found.
    region, cell_b = [0, 0, 150, 150], [200, 200, 260, 260]
    ground_truth = [truth("one.png", 1, [region, cell_b], [1, 2], crowd=[True, False])]
    detections = [
        found(
            "one.png",
            [region, [10, 10, 50, 50], [160, 0, 200, 40], cell_b],
            [0.95, 0.9, 0.8, 0.7],
            [1, 1, 1, 2],
        )
    ]
    metrics = coco_metrics(ground_truth, detections, LABELS)
    assert metrics["per_class"]["A"]["AP"] is None  # A has no cell to find, only the region
    assert metrics["per_class"]["B"]["AP"] == 1.0
    assert confusion_matrix(ground_truth, detections, LABELS, min_score=0.5)["counts"] == [
        [0, 0, 0],  # the region is not an A cell: nothing found, nothing missed
        [0, 1, 0],
        [1, 0, 0],  # only the detection outside the region is a background false positive
    ]
    froc = froc_points(ground_truth, detections, {1})
    assert froc["abnormal_boxes"] == 0  # a crowd region is not a box to find
    froc = froc_points(ground_truth, detections, {1, 2})
    assert froc["abnormal_boxes"] == 1
    assert froc["points"]["1"] == pytest.approx({"recall": 1.0, "fp_per_image": 1.0, "score_threshold": 0.7})


def test_class_without_ground_truth_gets_none_not_zero() -> None:
    labels = {1: "A", 2: "B", 3: "C"}
    ground_truth = [truth("one.png", 1, [[10, 10, 60, 60]], [1])]
    detections = [found("one.png", [[10, 10, 60, 60], [200, 200, 250, 250]], [0.9, 0.8], [1, 3])]
    metrics = coco_metrics(ground_truth, detections, labels)
    for name in ("B", "C"):  # B: no boxes, no detections; C: no boxes, one false positive
        assert metrics["per_class"][name] == {"AP": None, "AP50": None, "AP75": None, "AR100": None}
        assert name not in metrics["pr_curves"]
    assert metrics["per_class"]["A"]["AP"] == 1.0
    assert metrics["AP"] == 1.0  # the mean over classes that have ground truth


def test_coco_metrics_without_any_detection_are_zero() -> None:
    ground_truth = [truth("one.png", 1, [[10, 10, 60, 60]], [1])]
    metrics = coco_metrics(ground_truth, [found("one.png", [], [], [])], LABELS)
    assert metrics["AP"] == 0.0
    assert metrics["per_class"]["A"]["AP50"] == 0.0
    assert metrics["per_class"]["B"]["AP50"] is None


def test_image_level_screening_counts_four_images() -> None:
    normal, koilocytotic, dyskeratotic = 1, 2, 3
    cell, elsewhere = [10, 10, 60, 60], [200, 200, 250, 250]
    ground_truth = [
        truth("abnormal-found.png", 1, [cell], [koilocytotic]),
        truth("abnormal-found-as-other.png", 2, [cell, elsewhere], [koilocytotic, normal]),
        truth("normal-quiet.png", 3, [cell], [normal]),
        truth("normal-alarm.png", 4, [cell], [normal]),
    ]
    detections = [
        found("abnormal-found.png", [cell], [0.8], [koilocytotic]),
        found("abnormal-found-as-other.png", [elsewhere], [0.6], [dyskeratotic]),  # another abnormal class
        found("normal-quiet.png", [cell, elsewhere], [0.9, 0.3], [normal, koilocytotic]),  # 0.3 < min score
        found("normal-alarm.png", [elsewhere], [0.7], [koilocytotic]),
    ]
    screening = image_level_screening(ground_truth, detections, {koilocytotic, dyskeratotic}, min_score=0.5)
    assert screening == {"TP": 2, "FN": 0, "TN": 1, "FP": 1, "sensitivity": 1.0, "specificity": 0.5}


def test_froc_points_on_a_hand_computed_sweep() -> None:
    normal, koilocytotic, dyskeratotic = 1, 2, 3
    ground_truth = [
        truth(
            "one.png",
            1,
            [[0, 0, 50, 50], [100, 0, 150, 50], [200, 0, 250, 50]],
            [koilocytotic, dyskeratotic, normal],
        ),
        truth("two.png", 2, [[0, 100, 50, 150]], [koilocytotic]),
    ]
    detections = [
        found(
            "one.png",
            [[0, 200, 50, 250], [0, 0, 50, 50], [200, 0, 250, 50], [100, 0, 150, 50], [1, 1, 51, 51]],
            [0.99, 0.95, 0.85, 0.80, 0.70],
            # normal (ignored), K on K: TP, D on a normal cell: FP, K on D: TP (any-abnormal), duplicate: FP
            [normal, koilocytotic, dyskeratotic, koilocytotic, koilocytotic],
        ),
        found(
            "two.png",
            [[200, 200, 250, 250], [100, 200, 150, 250], [0, 100, 50, 150], [250, 250, 290, 290]],
            [0.90, 0.60, 0.50, 0.40],
            [dyskeratotic, koilocytotic, koilocytotic, dyskeratotic],  # FP, FP, TP, FP
        ),
    ]
    # sweep (score: TP, FP, FP/image): .95: 1,0,0  .90: 1,1,.5  .85: 1,2,1  .80: 2,2,1  .70: 2,3,1.5
    #                                   .60: 2,4,2  .50: 3,4,2  .40: 3,5,2.5
    froc = froc_points(ground_truth, detections, {koilocytotic, dyskeratotic})
    assert froc["abnormal_boxes"] == 3
    assert froc["matching"] == "any-abnormal"
    assert froc["points"]["1"] == pytest.approx(
        {"recall": 2 / 3, "fp_per_image": 1.0, "score_threshold": 0.8}
    )
    assert froc["points"]["2"] == pytest.approx({"recall": 1.0, "fp_per_image": 2.0, "score_threshold": 0.5})
    assert froc["points"]["4"] == pytest.approx({"recall": 1.0, "fp_per_image": 2.5, "score_threshold": 0.4})


def test_froc_point_is_none_when_the_first_threshold_already_exceeds_k() -> None:
    ground_truth = [truth("one.png", 1, [[0, 0, 50, 50]], [2])]
    background = [[100, 100, 150, 150], [200, 200, 250, 250], [100, 200, 150, 250]]
    detections = [found("one.png", [*background, [0, 0, 50, 50]], [0.9, 0.9, 0.9, 0.5], [2, 2, 2, 2])]
    points = froc_points(ground_truth, detections, {2})["points"]  # three tied false positives first
    assert points["1"] is None
    assert points["2"] is None
    assert points["4"] == pytest.approx({"recall": 1.0, "fp_per_image": 3.0, "score_threshold": 0.5})


def test_default_abnormal_knows_sipakmed_and_bethesda_only() -> None:
    sipakmed = ["Dyskeratotic", "Koilocytotic", "Metaplastic", "Parabasal", "Superficial-Intermediate"]
    assert default_abnormal(sipakmed)[0] == {"Koilocytotic", "Dyskeratotic"}
    bethesda = ["ASC-US", "LSIL", "Negative for intraepithelial lesion"]
    assert default_abnormal(bethesda)[0] == {"ASC-US", "LSIL"}
    assert default_abnormal(["NILM", "HSIL"])[0] == {"HSIL"}
    chosen, reason = default_abnormal(["cell"])
    assert chosen == set()
    assert "--abnormal" in reason
