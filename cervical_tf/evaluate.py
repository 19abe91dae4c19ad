"""`cervical-tf evaluate`: run an exported model over annotated images and write a report folder.

`run` predicts (the only part that needs the Predictor, imported inside it); the metrics live in
`evaluate_detections`, a function of ground truth and hand-buildable `Detections`, and
`write_report` turns its dict into report.json, report.md, pr_curves.png and confusion_matrix.png.
Nothing here imports TensorFlow at module import, so `cervical-tf --help` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence
from pathlib import Path

from cervical_tf import report_metrics
from cervical_tf.detections import Detections
from cervical_tf.ground_truth import GroundTruthImage, class_id_map, open_ground_truth, with_class_ids
from tfrecords_gen.records import DataError

MAX_DETECTIONS = 100  # per image, as COCO's AR100 and the Predictor's default
REPORT_FILES = ("report.json", "report.md", "pr_curves.png", "confusion_matrix.png")


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Register `evaluate` on the `cervical-tf` subparsers, with `handler=run`."""
    parser = verbs.add_parser(
        "evaluate",
        help="COCO AP, PR curves, confusion matrix and abnormal-cell screening metrics of an exported model",
        description="Predict on annotated images and write REPORT_DIR/report.json, report.md and plots.",
    )
    parser.add_argument("--model", type=Path, required=True, help="exported SavedModel folder (EXPORT_DIR)")
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="TFRecord glob(s) of a conversion, e.g. 'OUT/test-*.tfrecord' (quoted), or a COCO GT JSON",
    )
    parser.add_argument(
        "--images", type=Path, help="image folder of a COCO JSON --data (default: the JSON's folder)"
    )
    parser.add_argument("--output", type=Path, required=True, help="report folder (REPORT_DIR)")
    parser.add_argument(
        "--abnormal",
        help="comma-separated abnormal class names (default: Koilocytotic,Dyskeratotic for SIPaKMeD, "
        "every class but NILM for Bethesda labels, else none)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.5,
        help="score at which a detection counts for the confusion matrix and image-level calls (default 0.5)",
    )
    parser.add_argument("--tile", type=int, help="predict in tiles of T x T pixels (large slides)")
    parser.add_argument("--overlap", type=int, default=128, help="overlap of neighbouring tiles in pixels")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Load ground truth and the model, predict every image (progress bar), write the report."""
    from tqdm import tqdm

    from cervical_tf.predictor import Predictor  # deferred: loads TensorFlow and the SavedModel

    if not 0.0 <= args.min_score <= 1.0:
        raise DataError(f"--min-score: expected a score in [0, 1], got {args.min_score}")
    source = open_ground_truth(args.data, args.images)
    predictor = Predictor.load(args.model)
    labels = dict(sorted(predictor.labels.items()))
    abnormal, reason = abnormal_classes(args.abnormal, labels)
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
                tile=args.tile,
                overlap=args.overlap,
                max_detections=MAX_DETECTIONS,
                min_score=0.0,
            )
        )
    report = evaluate_detections(
        ground_truth, detections, labels, abnormal, args.min_score, abnormal_reason=reason
    )
    report["inputs"] = {
        "model": str(args.model),
        "data": source.description,
        "tile": args.tile,
        "overlap": args.overlap if args.tile else None,
        "max_detections": MAX_DETECTIONS,
    }
    written = write_report(report, args.output)
    print("\n".join(summary_lines(report)))
    print(f"wrote {', '.join(str(path) for path in written)}")


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
    image-level calls (the COCO metrics and the FROC use every detection). Returns the report
    dict written to report.json; metrics a subset of the data cannot define are None.
    """
    _check_inputs(ground_truth, detections, labels, abnormal)
    labels = dict(sorted(labels.items()))
    coco = report_metrics.coco_metrics(ground_truth, detections, labels)
    all_truth_ids = [int(class_id) for truth in ground_truth for class_id in truth.class_ids]
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
    screening = report_metrics.image_level_screening(ground_truth, detections, abnormal_ids, min_score)
    return {
        "images": len(ground_truth),
        "ground_truth_boxes": len(all_truth_ids),
        "detections": len(all_found_ids),
        "min_score": min_score,
        "iou_threshold": report_metrics.IOU_THRESHOLD,
        "AP": coco["AP"],
        "AP50": coco["AP50"],
        "AP75": coco["AP75"],
        "AR100": coco["AR100"],
        "per_class": per_class,
        "pr_curves": coco["pr_curves"],
        "confusion_matrix": report_metrics.confusion_matrix(ground_truth, detections, labels, min_score),
        "abnormal": {
            "classes": [name for name in labels.values() if name in abnormal],
            "chosen_by": abnormal_reason or "given by the caller",
            "image_level": screening if abnormal_ids else None,
            "froc": report_metrics.froc_points(ground_truth, detections, abnormal_ids)
            if abnormal_ids
            else None,
        },
    }


def write_report(report: dict, output_dir: Path) -> list[Path]:
    """report.json, report.md (tables, plots linked relatively) and the two PNGs into `output_dir`."""
    from cervical_tf.report_plots import plot_confusion_matrix, plot_pr_curves  # deferred: matplotlib

    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output {output_dir}: is a file; expected a report folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / name for name in REPORT_FILES]
    paths[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    ap50 = {name: metrics["AP50"] for name, metrics in report["per_class"].items()}
    plot_pr_curves(report["pr_curves"], ap50, paths[2])
    matrix = report["confusion_matrix"]
    plot_confusion_matrix(matrix["rows"], matrix["columns"], matrix["counts"], paths[3])
    return paths


def abnormal_classes(requested: str | None, labels: dict[int, str]) -> tuple[set[str], str]:
    """--abnormal NAME,... checked against the label map, or the default for its class names."""
    if requested is None:
        return report_metrics.default_abnormal(list(labels.values()))
    names = [name.strip() for name in requested.split(",") if name.strip()]
    for name in names:
        if name not in labels.values():
            close = difflib.get_close_matches(name, list(labels.values()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"--abnormal: {name!r} is not a class of the model ({sorted(labels.values())}){hint}"
            )
    return set(names), "given with --abnormal"


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


def render_markdown(report: dict) -> str:
    """report.md: the numbers of `report` in tables, the two plots linked relatively, the definitions."""
    inputs = report.get("inputs", {})
    lines = ["# Evaluation report", ""]
    if inputs:
        tiling = (
            f", tiles of {inputs['tile']} px overlapping {inputs['overlap']} px" if inputs["tile"] else ""
        )
        lines += [f"Model `{inputs['model']}` on {inputs['data']}{tiling}.", ""]
    lines += [
        f"{report['images']} images, {report['ground_truth_boxes']} ground-truth boxes, "
        f"{report['detections']} detections (up to {MAX_DETECTIONS} per image, every score).",
        "",
        "## COCO metrics",
        "",
        "| AP (IoU .50:.95) | AP50 | AP75 | AR100 |",
        "|---|---|---|---|",
        "| " + " | ".join(_cell(report[key]) for key in ("AP", "AP50", "AP75", "AR100")) + " |",
        "",
        "| class | id | ground-truth boxes | detections | AP | AP50 | AP75 | AR100 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, metrics in report["per_class"].items():
        numbers = " | ".join(_cell(metrics[key]) for key in ("AP", "AP50", "AP75", "AR100"))
        row = f"| {name} | {metrics['class_id']} | {metrics['ground_truth_boxes']} | {metrics['detections']}"
        lines.append(f"{row} | {numbers} |")
    lines += [
        "",
        "n/a: the class has no ground truth in this data.",
        "",
        "## Precision-recall at IoU 0.5",
        "",
    ]
    lines += ["![Precision-recall curves per class at IoU 0.5](pr_curves.png)", ""]
    matrix = report["confusion_matrix"]
    lines += [f"## Confusion matrix (IoU >= {report['iou_threshold']}, score >= {report['min_score']})", ""]
    lines += ["| true \\ predicted | " + " | ".join(matrix["columns"]) + " |"]
    lines += ["|---" * (len(matrix["columns"]) + 1) + "|"]
    for row, counts in zip(matrix["rows"], matrix["counts"], strict=True):
        lines.append(f"| {row} | " + " | ".join(str(count) for count in counts) + " |")
    lines += ["", "![Confusion matrix of matched detections at IoU 0.5](confusion_matrix.png)", ""]
    lines += _abnormal_markdown(report["abnormal"], report["min_score"])
    lines += ["## How the numbers are computed", "", *DEFINITIONS, ""]
    return "\n".join(lines)


DEFINITIONS = (
    "- COCO metrics: pycocotools COCOeval (bbox, IoU .50:.05:.95, 101 recall points, 100 detections per "
    "image), run on every detection whatever its score. Per-class values slice `eval['precision']` and "
    "`eval['recall']` at the class (area all, 100 detections); the overall values are COCOeval's `stats`, "
    "the mean over classes that have ground truth.",
    "- Precision-recall curves: COCO's interpolated precision at IoU 0.5, up to the recall reached.",
    "- Confusion matrix: detections scoring >= the minimum score, greedily by score, each matched "
    "class-agnostically to the unmatched ground-truth box of highest IoU (>= 0.5); unmatched detections are "
    "background false positives, unmatched boxes are missed.",
    "- Image-level screening: an image is truly abnormal if it has a ground-truth box of an abnormal class, "
    "called abnormal if a detection of an abnormal class scores >= the minimum score.",
    "- Abnormal-cell FROC: abnormal-class detections of every score against abnormal ground-truth boxes, "
    "any-abnormal (a box of one abnormal class found as another abnormal class counts as found), greedy by "
    "score at IoU >= 0.5 within each image; other detections are false positives. The threshold sweeps over "
    "the detection scores; the value at k is the recall at the lowest threshold whose false positives per "
    "image are <= k (n/a if none is).",
)


def _abnormal_markdown(abnormal: dict, min_score: float) -> list[str]:
    lines = ["## Abnormal cells", ""]
    if not abnormal["classes"]:
        return [*lines, f"Not computed: {abnormal['chosen_by']}.", ""]
    lines += [f"Abnormal classes: {', '.join(abnormal['classes'])} ({abnormal['chosen_by']}).", ""]
    screening = abnormal["image_level"]
    lines += [f"Image level, called abnormal at score >= {min_score}:", ""]
    lines += ["| TP | FN | TN | FP | sensitivity | specificity |", "|---|---|---|---|---|---|"]
    counts = " | ".join(str(screening[key]) for key in ("TP", "FN", "TN", "FP"))
    lines += [f"| {counts} | {_cell(screening['sensitivity'])} | {_cell(screening['specificity'])} |", ""]
    froc = abnormal["froc"]
    lines += [
        f"Cell level ({froc['abnormal_boxes']} abnormal boxes), recall at false positives per image:",
        "",
    ]
    lines += ["| FP per image <= | recall | FP per image reached | score threshold |", "|---|---|---|---|"]
    for k, point in froc["points"].items():
        if point is None:
            lines.append(f"| {k} | n/a | n/a | n/a |")
        else:
            values = (point["recall"], point["fp_per_image"], point["score_threshold"])
            lines.append(f"| {k} | " + " | ".join(_cell(value) for value in values) + " |")
    return [*lines, ""]


def summary_lines(report: dict) -> list[str]:
    """The short table `run` prints at the end: per-class AP, overall, abnormal screening."""
    rows = [(name, metrics["ground_truth_boxes"], metrics) for name, metrics in report["per_class"].items()]
    rows.append(("all classes", report["ground_truth_boxes"], report))
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'class':<{width}} {'boxes':>6} {'AP':>6} {'AP50':>6} {'AP75':>6} {'AR100':>6}"]
    for name, boxes, metrics in rows:
        numbers = " ".join(f"{_cell(metrics[key]):>6}" for key in ("AP", "AP50", "AP75", "AR100"))
        lines.append(f"{name:<{width}} {boxes:>6} {numbers}")
    abnormal = report["abnormal"]
    if abnormal["classes"]:
        screening, points = abnormal["image_level"], abnormal["froc"]["points"]
        abnormal_images, normal_images = screening["TP"] + screening["FN"], screening["TN"] + screening["FP"]
        lines.append(
            f"abnormal ({', '.join(abnormal['classes'])}), score >= {report['min_score']}: "
            f"sensitivity {_cell(screening['sensitivity'])} ({screening['TP']}/{abnormal_images}), "
            f"specificity {_cell(screening['specificity'])} ({screening['TN']}/{normal_images})"
        )
        recalls = " / ".join(_cell(point and point["recall"]) for point in points.values())
        lines.append(f"abnormal-cell recall at {' / '.join(points)} FP per image: {recalls}")
    else:
        lines.append(abnormal["chosen_by"])
    return lines


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
