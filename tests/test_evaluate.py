"""evaluate: the report's contract, the ground-truth loaders, and `run` end to end on a fake export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from fake_export import add_model_card, fake_model_card, write_fake_export
from PIL import Image

from cervical_tf.cli import evaluate as evaluate_cli
from cervical_tf.errors import DataError
from cervical_tf.evaluation import evaluate
from cervical_tf.evaluation import report as report_files
from cervical_tf.evaluation.ground_truth import GroundTruthImage, open_ground_truth
from cervical_tf.export.model_card import SYNTHETIC_WARNING
from cervical_tf.inference.abnormal import abnormal_classes
from cervical_tf.inference.detections import Detections
from tfrecords_gen import writer
from tfrecords_gen.records import Box, ImageRecord

REPORT_KEYS = {
    "images",
    "ground_truth_boxes",
    "crowd_regions",
    "detections",
    "min_score",
    "iou_threshold",
    "AP",
    "AP50",
    "AP75",
    "AR100",
    "per_class",
    "pr_curves",
    "confusion_matrix",
    "abnormal",
}
PER_CLASS_KEYS = {"class_id", "ground_truth_boxes", "detections", "AP", "AP50", "AP75", "AR100"}
ABNORMAL_KEYS = {"classes", "chosen_by", "image_level", "froc"}
LABELS = {1: "Negative for intraepithelial lesion", 2: "LSIL", 3: "HSIL"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def truth(name: str, image_id: int, boxes: list[list[float]], class_ids: list[int]) -> GroundTruthImage:
    return GroundTruthImage(
        name, image_id, 300, 300, np.array(boxes, np.float32).reshape(-1, 4), np.array(class_ids, np.int32)
    )


def found(name: str, boxes: list[list[float]], scores: list[float], class_ids: list[int]) -> Detections:
    return Detections(
        name,
        300,
        300,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(class_ids, np.int32),
        tuple(LABELS[class_id] for class_id in class_ids),
    )


@pytest.fixture
def bethesda_case() -> tuple[list[GroundTruthImage], list[Detections]]:
    """Two images; HSIL has no ground truth; one LSIL cell is found as NILM."""
    cell, other = [10, 10, 60, 60], [100, 100, 160, 160]
    ground_truth = [truth("one.png", 7, [cell, other], [1, 2]), truth("two.png", 9, [cell], [2])]
    detections = [found("one.png", [cell, other], [0.9, 0.8], [1, 2]), found("two.png", [cell], [0.7], [1])]
    return ground_truth, detections


def test_evaluate_detections_report_has_the_contract_keys(bethesda_case: tuple) -> None:
    abnormal = {"LSIL", "HSIL"}
    report = evaluate.evaluate_detections(*bethesda_case, LABELS, abnormal, min_score=0.5)
    assert set(report) == REPORT_KEYS
    assert set(report["per_class"]) == set(LABELS.values())
    assert all(set(metrics) == PER_CLASS_KEYS for metrics in report["per_class"].values())
    assert report["per_class"]["HSIL"]["AP"] is None
    assert report["per_class"]["LSIL"]["ground_truth_boxes"] == 2
    assert set(report["abnormal"]) == ABNORMAL_KEYS
    assert report["abnormal"]["classes"] == ["LSIL", "HSIL"]  # label-map order
    assert report["abnormal"]["image_level"] == {
        "TP": 1, "FN": 1, "TN": 0, "FP": 0, "sensitivity": 0.5, "specificity": None
    }  # fmt: skip
    assert set(report["abnormal"]["froc"]["points"]) == {"1", "2", "4"}
    matrix = report["confusion_matrix"]
    assert matrix["counts"][1][0] == 1  # the LSIL cell of two.png predicted NILM
    json.dumps(report)  # serializable as it stands


def test_evaluate_detections_without_abnormal_classes_says_so(bethesda_case: tuple) -> None:
    report = evaluate.evaluate_detections(
        *bethesda_case, LABELS, set(), min_score=0.5, abnormal_reason="no abnormal classes: pass --abnormal"
    )
    assert report["abnormal"] == {
        "classes": [], "chosen_by": "no abnormal classes: pass --abnormal", "image_level": None, "froc": None
    }  # fmt: skip
    markdown = report_files.render_markdown(report)
    assert "Not computed: no abnormal classes: pass --abnormal" in markdown


def test_evaluate_detections_refuses_detections_of_other_images(bethesda_case: tuple) -> None:
    ground_truth, detections = bethesda_case
    with pytest.raises(ValueError, match="order of the ground truth"):
        evaluate.evaluate_detections(ground_truth, detections[::-1], LABELS, set(), 0.5)


def test_write_report_names_every_class_and_links_valid_pngs(bethesda_case: tuple, tmp_path: Path) -> None:
    report = evaluate.evaluate_detections(*bethesda_case, LABELS, {"LSIL", "HSIL"}, min_score=0.5)
    written = report_files.write_report(report, tmp_path / "report")
    assert [path.name for path in written] == [
        "report.json",
        "report.md",
        "pr_curves.png",
        "confusion_matrix.png",
    ]
    assert json.loads((tmp_path / "report" / "report.json").read_text()) == report
    markdown = (tmp_path / "report" / "report.md").read_text()
    for name in LABELS.values():
        assert f"| {name} |" in markdown
    for image in ("pr_curves.png", "confusion_matrix.png"):
        assert f"]({image})" in markdown
        path = tmp_path / "report" / image
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as opened:
            opened.verify()
    assert "| 1 | 1 | 0 | 0 | 0.500 | n/a |" in markdown  # image-level TP FN TN FP sensitivity specificity
    assert "| LSIL | 1 | 1 | 0 | 0 |" in markdown  # confusion row: one LSIL cell called NILM, one found


def test_abnormal_classes_checks_names_and_suggests_the_close_one() -> None:
    assert abnormal_classes("LSIL, HSIL", LABELS) == ({"LSIL", "HSIL"}, "given with --abnormal")
    assert abnormal_classes(None, LABELS)[0] == {"LSIL", "HSIL"}  # Bethesda default
    with pytest.raises(DataError, match="did you mean 'LSIL'"):
        abnormal_classes("LSII", LABELS)


def write_converted(tmp_path: Path, label_map: dict[str, int]) -> tuple[Path, list[ImageRecord]]:
    """Three PNGs (a dark and/or a grey rectangle on white) converted into OUT/test-*.tfrecord."""
    source = tmp_path / "source"
    source.mkdir()
    dark, grey = Box("dark", 10, 8, 40, 30), Box("grey", 50, 30, 80, 60)
    records = []
    for name, boxes in (("both.png", (dark, grey)), ("dark.png", (dark,)), ("grey.png", (grey,))):
        pixels = np.full((64, 96, 3), 255, dtype=np.uint8)
        for box, value in zip(boxes, [20 if box.label == "dark" else 90 for box in boxes], strict=True):
            pixels[int(box.y_min) : int(box.y_max), int(box.x_min) : int(box.x_max)] = value
        Image.fromarray(pixels).save(source / name)
        records.append(ImageRecord(source / name, name, 96, 64, name, boxes))
    assignment = {record.name: "test" for record in records}
    writer.write_dataset(tmp_path / "out", records, assignment, label_map, seed=0, workers=1, progress=False)
    return tmp_path / "out", records


def test_tfrecord_ground_truth_gives_back_the_written_pixel_boxes(tmp_path: Path) -> None:
    out, records = write_converted(tmp_path, {"dark": 1, "grey": 2})
    source = open_ground_truth([str(out / "test-*.tfrecord")])
    assert source.image_count == 3
    assert source.labels == {1: "dark", 2: "grey"}
    loaded = {truth.name: (truth, pixels) for truth, pixels in source.images()}
    assert set(loaded) == {record.name for record in records}
    coco = json.loads((out / "test_coco.json").read_text())
    coco_ids = {image["file_name"]: image["id"] for image in coco["images"]}
    for record in records:
        truth, pixels = loaded[record.name]
        expected = [[box.x_min, box.y_min, box.x_max, box.y_max] for box in record.boxes]
        np.testing.assert_allclose(truth.boxes_px, np.reshape(expected, (-1, 4)), atol=1e-3)
        assert truth.class_ids.tolist() == [{"dark": 1, "grey": 2}[box.label] for box in record.boxes]
        assert (truth.width, truth.height, truth.image_id) == (96, 64, coco_ids[record.name])
        assert pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, np.asarray(Image.open(record.image_path).convert("RGB")))


def test_coco_ground_truth_agrees_with_the_tfrecords(tmp_path: Path) -> None:
    out, _ = write_converted(tmp_path, {"dark": 1, "grey": 2})
    from_json = open_ground_truth([str(out / "test_coco.json")], images_dir=tmp_path / "source")
    from_records = open_ground_truth([str(out / "test-*.tfrecord")])
    assert from_json.labels == from_records.labels
    records = {truth.name: truth for truth, _ in from_records.images()}
    for truth, pixels in from_json.images():
        np.testing.assert_allclose(truth.boxes_px, records[truth.name].boxes_px, atol=1e-3)
        assert truth.image_id == records[truth.name].image_id
        assert pixels.shape == (64, 96, 3)


def test_both_ground_truth_loaders_read_crowd_regions(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    Image.fromarray(np.full((64, 96, 3), 255, dtype=np.uint8)).save(source / "crowd.png")
    boxes = (Box("dark", 10, 8, 40, 30), Box("grey", 0, 0, 96, 64, is_crowd=True))
    record = ImageRecord(source / "crowd.png", "crowd.png", 96, 64, "crowd.png", boxes)
    writer.write_dataset(
        tmp_path / "out",
        [record],
        {"crowd.png": "test"},
        {"dark": 1, "grey": 2},
        0,
        workers=1,
        progress=False,
    )
    for data in ([str(tmp_path / "out" / "test-*.tfrecord")], [str(tmp_path / "out" / "test_coco.json")]):
        [(loaded, _)] = open_ground_truth(data, None if "tfrecord" in data[0] else source).images()
        assert loaded.is_crowd.tolist() == [False, True]

    report = evaluate.evaluate_detections(
        [loaded], [found("crowd.png", [], [], [])], {1: "dark", 2: "grey"}, set(), 0.5
    )
    assert (report["ground_truth_boxes"], report["crowd_regions"]) == (1, 1)
    assert report["per_class"]["grey"]["ground_truth_boxes"] == 0


def test_open_ground_truth_explains_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no TFRecord file matches"):
        open_ground_truth([str(tmp_path / "test-*.tfrecord")])
    out, _ = write_converted(tmp_path, {"dark": 1, "grey": 2})
    with pytest.raises(DataError, match=r"3 of 3 images are not in .*point --images"):
        open_ground_truth([str(out / "test_coco.json")])  # the images are not beside the JSON


def test_run_writes_the_report_of_a_fake_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, _ = write_converted(tmp_path, {"dark": 1, "grey": 2})
    export = write_fake_export(tmp_path / "export", grey_score=0.8)
    parser = argparse.ArgumentParser()
    evaluate_cli.add_parser(parser.add_subparsers(dest="verb"))
    report_dir = tmp_path / "report"
    argv = [
        "evaluate",
        "--model",
        str(export),
        "--data",
        str(out / "test-*.tfrecord"),
        "--output",
        str(report_dir),
    ]
    args = parser.parse_args([*argv, "--abnormal", "dark"])
    args.handler(args)

    report = json.loads((report_dir / "report.json").read_text())
    assert set(report) == REPORT_KEYS | {"inputs", "model_card"}
    assert report["model_card"]["provenance"] == "unknown"  # the fake export has no model card
    assert (report["AP"], report["AP50"], report["AP75"]) == (1.0, 1.0, 1.0)
    assert report["per_class"]["dark"]["class_id"] == 2  # the model's ids, matched by name
    assert report["per_class"]["dark"]["AP50"] == report["per_class"]["grey"]["AP50"] == 1.0
    assert report["confusion_matrix"]["counts"] == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]
    screening = report["abnormal"]["image_level"]
    assert (screening["TP"], screening["FN"], screening["TN"], screening["FP"]) == (2, 0, 1, 0)
    assert all((report_dir / name).is_file() for name in report_files.REPORT_FILES)
    markdown = (report_dir / "report.md").read_text()
    # evaluate's default keeps the model's per-class NMS: the numbers are training's validation numbers
    assert "The COCO metrics are those training's validation reports" in markdown
    assert report["inputs"]["agnostic_nms"] is False
    printed = capsys.readouterr().out
    assert "all classes" in printed
    assert str(report_dir / "report.md") in printed


@pytest.mark.parametrize("synthetic_sample", ["all", "none"])
def test_report_shows_the_model_card_and_warns_for_a_synthetic_model(
    tmp_path: Path, capsys: pytest.CaptureFixture, synthetic_sample: str
) -> None:
    out, _ = write_converted(tmp_path, {"dark": 1, "grey": 2})
    export = add_model_card(write_fake_export(tmp_path / "export", grey_score=0.8), synthetic_sample)
    card = fake_model_card(synthetic_sample)
    report_dir = tmp_path / "report"
    evaluate.evaluate_model(export, [str(out / "test-*.tfrecord")], report_dir)

    report = json.loads((report_dir / "report.json").read_text())
    assert report["model_card"]["training_data"] == card["training_data"]
    assert report["model_card"]["validation"] == {"step": 300, "AP": 0.25, "AP50": 0.5}
    markdown = (report_dir / "report.md").read_text()
    lines = markdown.splitlines()
    assert "| train | 8 | 40 | grey 25, dark 15 |" in lines
    assert "## The model" in lines and f"{report['model_card']['summary']}." in lines
    printed = capsys.readouterr()
    assert f"model: {report['model_card']['summary']}" in printed.out
    warning = f"the model was {SYNTHETIC_WARNING}"
    if synthetic_sample == "all":
        assert lines[2] == f"> **Warning: {warning}.**"  # right under the title
        assert report["model_card"]["warning"] == SYNTHETIC_WARNING
        assert warning in printed.err.splitlines()[-1]
    else:
        assert "Warning" not in markdown and report["model_card"]["warning"] is None
        assert "warning" not in printed.err
