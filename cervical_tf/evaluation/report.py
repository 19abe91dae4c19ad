"""The evaluation report: report.json, report.md (tables, definitions), the plots, the terminal summary."""

from __future__ import annotations

import json
from pathlib import Path

from cervical_tf.errors import DataError

REPORT_FILES = ("report.json", "report.md", "pr_curves.png", "confusion_matrix.png")


def write_report(report: dict, output_dir: Path) -> list[Path]:
    """report.json, report.md (tables, plots linked relatively) and the two PNGs into `output_dir`."""
    from cervical_tf.evaluation.plots import plot_confusion_matrix, plot_pr_curves  # deferred: matplotlib

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


def render_markdown(report: dict) -> str:
    """report.md: the numbers of `report` in tables, the two plots linked relatively, the definitions."""
    inputs = report.get("inputs", {})
    card = report.get("model_card")
    lines = ["# Evaluation report", ""]
    if card and card["warning"]:
        lines += [f"> **Warning: the model was {card['warning']}.**", ""]
    if inputs:
        tiling = (
            f", tiles of {inputs['tile']} px overlapping {inputs['overlap']} px" if inputs["tile"] else ""
        )
        lines += [
            f"Model `{inputs['model']}` on {inputs['data']}{tiling}.",
            "",
            _training_comparison(inputs),
            "",
        ]
    if card:
        lines += _model_markdown(card)
    crowd = f" (and {report['crowd_regions']} crowd regions)" if report["crowd_regions"] else ""
    lines += [
        f"{report['images']} images, {report['ground_truth_boxes']} ground-truth boxes{crowd}, "
        f"{report['detections']} detections (every one the model returns, every score).",
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
    "- COCO metrics: pycocotools COCOeval (bbox, IoU .50:.05:.95, 101 recall points, at most 100 detections "
    "per image and class), run on every detection the model returns whatever its score, on every image (an "
    "image without detections counts its boxes as missed). Crowd regions (COCO `iscrowd`, TFRecord "
    "`image/object/is_crowd`) are COCOeval's: never a box to find; detections matched to them are ignored. "
    "This is the definition of training's validation metrics (official.vision's COCOEvaluator on the "
    "converted `val_coco.json`, boxes clipped to the image as the export clips them: metrics.csv, "
    "TensorBoard), so the two agree for the same model and images unless class-agnostic NMS or tiling "
    "changed the detections. Per-class values slice `eval['precision']` "
    "and `eval['recall']` at the class (area all, 100 detections); the overall values are COCOeval's "
    "`stats`, the mean over classes that have ground truth.",
    "- Precision-recall curves: COCO's interpolated precision at IoU 0.5, up to the recall reached.",
    "- Confusion matrix: detections scoring >= the minimum score, greedily by score, each matched "
    "class-agnostically to the unmatched ground-truth box of highest IoU (>= 0.5); unmatched detections are "
    "background false positives, unmatched boxes are missed. A crowd region is neither found nor missed; "
    "an unmatched detection at least half inside one (intersection over the detection's area) is ignored.",
    "- Image-level screening: an image is truly abnormal if it has a ground-truth box of an abnormal class, "
    "called abnormal if a detection of an abnormal class scores >= the minimum score. A crowd region of an "
    "abnormal class makes the image truly abnormal.",
    "- Abnormal-cell FROC: abnormal-class detections of every score against abnormal ground-truth boxes, "
    "any-abnormal (a box of one abnormal class found as another abnormal class counts as found), greedy by "
    "score at IoU >= 0.5 within each image; other detections are false positives. The threshold sweeps over "
    "the detection scores; the value at k is the recall at the lowest threshold whose false positives per "
    "image are <= k (n/a if none is). Crowd regions are not counted as boxes; unmatched detections at least "
    "half inside an abnormal-class crowd region are ignored.",
)


def _model_markdown(card: dict) -> list[str]:
    """The model card: its summary and what the model learned from, split by split."""
    lines = ["## The model", "", f"{card['summary']}.", ""]
    data = card.get("training_data") or {}
    if data.get("splits"):
        lines += [f"Trained on `{data['folder']}`:", ""]
        lines += ["| split | images | boxes | boxes per class |", "|---|---|---|---|"]
        for split, numbers in data["splits"].items():
            classes = ", ".join(f"{name} {count}" for name, count in numbers["classes"].items())
            lines.append(f"| {split} | {numbers['images']} | {numbers['boxes']} | {classes} |")
        lines.append("")
    if data.get("note"):
        lines += [f"Note: {data['note']}.", ""]
    if card.get("pixel_size_note"):
        lines += [f"Pixel size: {card['pixel_size_note']}.", ""]
    return lines


def _training_comparison(inputs: dict) -> str:
    """Whether the COCO numbers use training's validation definition, and if not, which flag changed it."""
    changes = [
        reason
        for reason, applied in (
            ("class-agnostic NMS (--agnostic-nms)", inputs["agnostic_nms"]),
            ("tiling (--tile)", inputs["tile"]),
        )
        if applied
    ]
    if not changes:
        return "The COCO metrics are those training's validation reports for this model on this data."
    return (
        f"The detections went through {' and '.join(changes)}, which training's validation does not apply: "
        "its COCO metrics (metrics.csv) can differ; --no-agnostic-nms without --tile measures the same thing."
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
