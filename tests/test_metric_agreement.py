"""`evaluate` and training-time validation give the same COCO numbers for the same model and data.

The model is a fixed table of detections per image, padded to more than 100 rows like a config
with `max_num_detections: 160`. official.vision's evaluator (the project's PerClassCocoEvaluator, as
`cervical-tf train` builds it) gets the converted folder's `test_coco.json` and the table in the form
the task hands it over: pixels of the padded, resized model input (boxes may reach into the padding
beyond the image), `image_info`, zero-padded rows. `evaluate` gets the converted TFRecords (or the
COCO JSON) and a stand-in SavedModel returning the same table the way the export's serving graph
does: normalized to the original image and clipped to it (the image's top-left red value picks the
row). The data holds the cases where the two used to differ: a crowd region, an image the model
finds nothing in, an image with 150 detections of two classes, and a box reaching past the image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cervical_tf.evaluation.evaluate import evaluate_model
from cervical_tf.training.task import PerClassCocoEvaluator
from tfrecords_gen import writer
from tfrecords_gen.records import Box, ImageRecord

LABEL_MAP = {"round": 1, "flat": 2}
WIDTH, HEIGHT = 320, 240
ROWS = 160  # the model's output rows, more than COCO's 100 detections per image
INPUT_SIZE = 256  # the model's square input: the image is resized by 0.8 to 256 x 192 and padded
IMAGE_INFO = [[HEIGHT, WIDTH], [INPUT_SIZE, INPUT_SIZE], [0.8, 0.8], [0, 0]]  # official.vision's layout


@dataclass(frozen=True)
class Scene:
    """One image: its ground truth and what the model returns for it (original-image pixel xyxy,
    before the export's clipping to the image)."""

    name: str
    truth: list[Box]
    found_boxes: list[list[float]]
    found_scores: list[float]
    found_classes: list[int]


def crowded_scene(rng: np.random.Generator) -> Scene:
    """140 cells on a grid (70 of each class) and 150 detections: every cell, slightly shifted so that
    AP differs across IoU thresholds, plus 10 wrong-class ones, scores shuffled."""
    cells = [(x, y) for y in range(0, 220, 22) for x in range(0, 308, 22)]
    truth = [Box(["round", "flat"][index % 2], x, y, x + 20, y + 20) for index, (x, y) in enumerate(cells)]
    shifts = rng.uniform(0, 4, size=len(cells))
    boxes = [[x + shift, y, x + 20 + shift, y + 20] for (x, y), shift in zip(cells, shifts, strict=True)]
    classes = [LABEL_MAP[box.label] for box in truth]
    boxes += [[x, y, x + 20, y + 20] for x, y in cells[:20:2]]  # "flat" said of round cells
    classes += [LABEL_MAP["flat"]] * 10
    scores = rng.permutation(np.linspace(0.2, 0.99, len(boxes))).tolist()
    return Scene("crowded.png", truth, boxes, scores, classes)


def scenes() -> list[Scene]:
    crowd = Box("round", 0, 0, 160, 120, is_crowd=True)
    edge_cell = Box("round", 100, 200, 140, 240)  # touches the bottom edge, where the padding begins
    return [
        crowded_scene(np.random.default_rng(0)),
        Scene(
            "crowd.png",
            [crowd, Box("flat", 200, 150, 260, 210), edge_cell],
            # the whole crowd region, a cell inside it (both ignored), the flat cell, a false positive,
            # the edge cell with a box reaching 50 px into the padding (IoU 1 once clipped, 0.44 not)
            [
                [0, 0, 160, 120],
                [10, 10, 50, 50],
                [201, 151, 260, 210],
                [250, 10, 300, 60],
                [100, 200, 140, 290],
            ],
            [0.97, 0.96, 0.6, 0.9, 0.5],
            [1, 1, 2, 2, 1],
        ),
        Scene("empty.png", [Box("round", 20, 20, 60, 60), Box("flat", 100, 100, 150, 150)], [], [], []),
    ]


class TableDetector(tf.Module):
    """Returns row `red value of pixel (0, 0)` of fixed detection tables, in the export's format."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, counts: np.ndarray):
        super().__init__()
        self._boxes, self._scores = tf.constant(boxes), tf.constant(scores)
        self._classes, self._counts = tf.constant(classes), tf.constant(counts)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        row = tf.cast(input_tensor[0, 0, 0, 0], tf.int32)
        return {
            "detection_boxes": self._boxes[row][tf.newaxis],
            "detection_scores": self._scores[row][tf.newaxis],
            "detection_classes": self._classes[row][tf.newaxis],
            "num_detections": self._counts[row][tf.newaxis],
        }


def padded_tables(all_scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Detections per scene padded to ROWS with zero rows: boxes pixel xyxy, scores, classes, counts."""
    tables = {
        "boxes": np.zeros((len(all_scenes), ROWS, 4), np.float32),
        "scores": np.zeros((len(all_scenes), ROWS), np.float32),
        "classes": np.zeros((len(all_scenes), ROWS), np.float32),
        "counts": np.zeros(len(all_scenes), np.float32),
    }
    for row, scene in enumerate(all_scenes):
        count = len(scene.found_scores)
        tables["boxes"][row, :count] = np.reshape(scene.found_boxes, (-1, 4))
        tables["scores"][row, :count] = scene.found_scores
        tables["classes"][row, :count] = scene.found_classes
        tables["counts"][row] = count
    return tables


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The converted folder, the images, the stand-in export and the detection tables."""
    root = tmp_path_factory.mktemp("agreement")
    all_scenes = scenes()
    (root / "images").mkdir()
    records = []
    for row, scene in enumerate(all_scenes):
        pixels = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
        pixels[0, 0, 0] = row  # tells the stand-in model which image this is
        Image.fromarray(pixels).save(root / "images" / scene.name)
        records.append(
            ImageRecord(
                root / "images" / scene.name, scene.name, WIDTH, HEIGHT, scene.name, tuple(scene.truth)
            )
        )
    assignment = {record.name: "test" for record in records}
    writer.write_dataset(root / "data", records, assignment, LABEL_MAP, seed=0, workers=1, progress=False)
    tables = padded_tables(all_scenes)
    normalized = np.clip(tables["boxes"][..., [1, 0, 3, 2]] / [HEIGHT, WIDTH, HEIGHT, WIDTH], 0.0, 1.0)
    module = TableDetector(
        normalized.astype(np.float32), tables["scores"], tables["classes"], tables["counts"]
    )
    export = root / "export"
    tf.saved_model.save(module, str(export / "saved_model"), signatures={"serving_default": module.serve})
    (export / "label_map.pbtxt").write_text(
        "".join(f"item {{\n  id: {class_id}\n  name: '{name}'\n}}\n" for name, class_id in LABEL_MAP.items()),
        encoding="utf-8",
    )
    return {"root": root, "scenes": all_scenes, "tables": tables, "export": export}


def training_time_metrics(case: dict) -> dict[str, float]:
    """What `cervical-tf train` reports for these detections: PerClassCocoEvaluator on test_coco.json,
    fed one image per update as MaskRCNNTask's validation step does (boxes in model-input pixels)."""
    annotation_file = case["root"] / "data" / "test_coco.json"
    image_ids = {
        image["file_name"]: image["id"] for image in json.loads(annotation_file.read_text())["images"]
    }
    evaluator = PerClassCocoEvaluator(
        annotation_file=str(annotation_file), include_mask=False, per_category_metrics=True
    )
    tables = case["tables"]
    for row, scene in enumerate(case["scenes"]):
        yxyx = tables["boxes"][row][:, [1, 0, 3, 2]] * IMAGE_INFO[2][0]
        predictions = {
            "source_id": tf.constant([image_ids[scene.name]], tf.int64),
            "image_info": tf.constant([IMAGE_INFO], tf.float32),
            "num_detections": tf.constant([int(tables["counts"][row])], tf.int32),
            "detection_boxes": tf.constant(yxyx[np.newaxis], tf.float32),
            "detection_scores": tf.constant(tables["scores"][row][np.newaxis], tf.float32),
            "detection_classes": tf.constant(tables["classes"][row][np.newaxis], tf.int32),
        }
        evaluator.update_state({}, predictions)
    return {name: float(value) for name, value in evaluator.result().items()}


@pytest.mark.parametrize("source", ["tfrecords", "coco_json"])
def test_evaluate_and_training_time_metrics_agree(case: dict, source: str, tmp_path: Path) -> None:
    data = case["root"] / "data"
    if source == "tfrecords":
        inputs = {"data": [str(data / "test-*.tfrecord")]}
    else:
        inputs = {"data": [str(data / "test_coco.json")], "images": case["root"] / "images"}
    evaluate_model(case["export"], inputs["data"], tmp_path, images=inputs.get("images"), agnostic_nms=False)
    report = json.loads((tmp_path / "report.json").read_text())
    expected = training_time_metrics(case)

    markdown = (tmp_path / "report.md").read_text()
    assert "The COCO metrics are those training's validation reports" in markdown
    assert 0.2 < expected["AP"] < 0.9 and 0.3 < expected["AP50"] < 0.95  # numbers that can disagree
    assert report["AP"] == pytest.approx(expected["AP"], abs=1e-5)
    assert report["AP50"] == pytest.approx(expected["AP50"], abs=1e-5)
    for name in LABEL_MAP:
        assert report["per_class"][name]["AP"] == pytest.approx(
            expected[f"Precision mAP ByCategory/{name}"], abs=1e-5
        )
        assert report["per_class"][name]["AP50"] == pytest.approx(
            expected[f"Precision mAP ByCategory@50IoU/{name}"], abs=1e-5
        )
