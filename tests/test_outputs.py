"""Result writers: the exact schemas of JSON, CSV, GeoJSON and COCO results; the overlay; counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cervical_tf.inference import outputs
from cervical_tf.inference.detections import Detections

LABELS = {1: "normal", 2: "koilocyte"}


def detections(image: str, boxes: list[list[float]], scores: list[float], class_ids: list[int]) -> Detections:
    return Detections(
        image=image,
        width=400,
        height=300,
        boxes_px=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array(scores, dtype=np.float32),
        class_ids=np.array(class_ids, dtype=np.int32),
        labels=tuple(LABELS[class_id] for class_id in class_ids),
    )


@pytest.fixture
def run() -> list[Detections]:
    return [
        detections("a.png", [[10, 20, 110, 70], [200, 100, 260, 180]], [0.9, 0.75], [2, 1]),
        detections("b.png", [], [], []),
    ]


def test_detections_json_schema(tmp_path: Path, run: list[Detections]) -> None:
    outputs.write_detections_json(tmp_path / "detections.json", run)
    written = json.loads((tmp_path / "detections.json").read_text())
    assert [set(entry) for entry in written] == [{"image", "width", "height", "detections"}] * 2
    assert written[0]["image"] == "a.png" and (written[0]["width"], written[0]["height"]) == (400, 300)
    assert written[0]["detections"][0] == {
        "box": [10, 20, 110, 70],
        "class": "koilocyte",
        "class_id": 2,
        "score": 0.9,
    }
    assert written[1]["detections"] == []


def test_detections_csv_columns(tmp_path: Path, run: list[Detections]) -> None:
    outputs.write_detections_csv(tmp_path / "detections.csv", run)
    header = (tmp_path / "detections.csv").read_text().splitlines()[0]
    assert header == "image,width,height,class,class_id,score,xmin,ymin,xmax,ymax"
    table = pd.read_csv(tmp_path / "detections.csv")
    assert table["class"].tolist() == ["koilocyte", "normal"]
    assert table.iloc[1][["xmin", "ymin", "xmax", "ymax"]].tolist() == [200, 100, 260, 180]


def test_geojson_features_are_qupath_detections(tmp_path: Path, run: list[Detections]) -> None:
    outputs.write_geojson(tmp_path / "detections.geojson", run)
    collection = json.loads((tmp_path / "detections.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == 2
    for feature in collection["features"]:
        properties = feature["properties"]
        assert properties["objectType"] == "detection"
        assert properties["classification"]["name"] in LABELS.values()
        assert len(properties["classification"]["color"]) == 3
        assert properties["image"] == "a.png"
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1]
    first = collection["features"][0]
    assert first["geometry"]["coordinates"][0] == [[10, 20], [110, 20], [110, 70], [10, 70], [10, 20]]
    assert first["properties"]["measurements"] == {"score": 0.9}


def test_coco_results_bbox_is_xywh(tmp_path: Path, run: list[Detections]) -> None:
    outputs.write_coco_results(tmp_path / "coco_results.json", run, {"a.png": 7, "b.png": 8})
    results = json.loads((tmp_path / "coco_results.json").read_text())
    assert results == [
        {"image_id": 7, "category_id": 2, "bbox": [10, 20, 100, 50], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [200, 100, 60, 80], "score": 0.75},
    ]


def test_overlay_is_png_of_image_size(tmp_path: Path, run: list[Detections]) -> None:
    image = np.full((300, 400, 3), 230, dtype=np.uint8)
    outputs.write_overlay(tmp_path / "a.png", image, run[0], outputs.palette(LABELS))
    with Image.open(tmp_path / "a.png") as overlay:
        assert (overlay.format, overlay.size) == ("PNG", (400, 300))
        pixels = np.asarray(overlay.convert("RGB"))
    assert pixels[45, 110].tolist() == list(outputs.class_color(2))  # right edge of the koilocyte box
    assert not np.array_equal(pixels, image)
    outputs.write_overlay(tmp_path / "b.png", image, run[1], outputs.palette(LABELS))
    assert (tmp_path / "b.png").is_file()
    assert not list(tmp_path.glob(".*tmp*"))


def test_class_colors_are_tab10_by_id() -> None:
    assert outputs.class_color(1) == (31, 119, 180)
    assert outputs.class_color(11) == outputs.class_color(1)
    assert outputs.palette(LABELS) == {1: outputs.class_color(1), 2: outputs.class_color(2)}


def test_counts_table_rows_per_image_and_total(run: list[Detections]) -> None:
    table = outputs.counts_table(run, LABELS)
    lines = table.splitlines()
    assert lines[0].split() == ["normal", "koilocyte"]
    assert [line.split() for line in lines[2:]] == [
        ["a.png", "1", "1"],
        ["b.png", "0", "0"],
        ["total", "1", "1"],
    ]
