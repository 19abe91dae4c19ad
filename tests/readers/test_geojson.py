"""The GeoJSON reader: polygon extents, QuPath classifications, image lookup by stem."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import geojson
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, ReaderInput

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]

NO_CLASS = "no class: expected properties.classification.name, properties.label or properties.name"
SQUARE = {"type": "Polygon", "coordinates": [[[10, 5], [30, 5], [30, 25], [10, 25], [10, 5]]]}


def feature(geometry: dict, properties: dict | None) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def collection(*features: dict) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def test_geojson_boxes_are_extents_and_labels_follow_qupath_first(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    image = write_image(tmp_path / "images" / "field1.tif")
    two_squares = {
        "type": "MultiPolygon",
        "coordinates": [[[[1, 2], [3, 2], [3, 4], [1, 2]]], [[[40, 30], [50, 30], [45, 44.5], [40, 30]]]],
    }
    path = write_text(
        tmp_path / "geojson" / "field1.geojson",
        collection(
            feature(SQUARE, {"classification": {"name": "LSIL", "color": [1, 2, 3]}, "label": "ignored"}),
            feature(two_squares, {"label": "ASC-US", "class_id": 1}),
            feature(SQUARE, {"name": "HSIL"}),
        ),
    )

    result = geojson.read(ReaderInput(tmp_path / "geojson"))

    origin = Origin(path)
    assert result.problems == []
    assert result.images == [
        ParsedImage(
            image,
            (
                ParsedBox("LSIL", 10, 5, 30, 25, origin),
                ParsedBox("ASC-US", 1, 2, 50, 44.5, origin),
                ParsedBox("HSIL", 10, 5, 30, 25, origin),
            ),
            origin,
        )
    ]
    assert result.image_dirs == [tmp_path / "images"]


def test_geojson_accepts_a_bare_list_and_a_single_feature(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    listed = write_image(tmp_path / "listed.png")
    single = write_image(tmp_path / "single.png")
    write_text(tmp_path / "listed.json", json.dumps([feature(SQUARE, {"label": "NILM"})]))
    write_text(tmp_path / "single.geojson", json.dumps(feature(SQUARE, {"label": "NILM"})))

    result = geojson.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert [(image.image_path, len(image.boxes)) for image in result.images] == [(listed, 1), (single, 1)]
    assert result.image_dirs == [tmp_path]


def test_geojson_point_geometry_and_missing_class_are_reported(tmp_path: Path, write_text: WriteText) -> None:
    point = {"type": "Point", "coordinates": [5, 5]}
    path = write_text(
        tmp_path / "a.geojson",
        collection(
            feature(point, {"label": "NILM"}),
            feature(SQUARE, {"classification": {"color": [1, 2, 3]}}),
            feature(SQUARE, {"label": "NILM"}),
        ),
    )

    result = geojson.read(ReaderInput(path, images_dir=tmp_path / "pictures"))

    assert [(problem.origin, problem.kind, problem.message) for problem in result.problems] == [
        (
            Origin(path),
            Kind.PARSE_ERROR,
            "features[0]: expected a Polygon or MultiPolygon geometry, got Point",
        ),
        (Origin(path), Kind.UNKNOWN_CLASS, f"features[1]: {NO_CLASS}"),
    ]
    # no image with stem "a" in --images: the expected path names the stem so validate reports it missing
    assert result.images == [
        ParsedImage(
            tmp_path / "pictures" / "a", (ParsedBox("NILM", 10, 5, 30, 25, Origin(path)),), Origin(path)
        )
    ]


def test_geojson_invalid_file_is_reported_and_the_others_are_read(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    broken = write_text(tmp_path / "a.geojson", '{"type": "FeatureCollection",\n"features": [}')
    polygonless = write_text(tmp_path / "b.geojson", json.dumps({"type": "Polygon", "coordinates": []}))
    write_text(tmp_path / "c.geojson", collection())

    result = geojson.read(ReaderInput(tmp_path))

    assert [(image.image_path.name, image.boxes) for image in result.images] == [("c", ())]
    assert [(problem.origin, problem.kind) for problem in result.problems] == [
        (Origin(broken, 2), Kind.PARSE_ERROR),
        (Origin(polygonless), Kind.PARSE_ERROR),
    ]


def test_geojson_refuses_a_missing_input_and_other_files(tmp_path: Path, write_text: WriteText) -> None:
    with pytest.raises(DataError, match="not found"):
        geojson.read(ReaderInput(tmp_path / "absent.geojson"))
    with pytest.raises(DataError, match=r"expected a \.geojson/\.json file"):
        geojson.read(ReaderInput(write_text(tmp_path / "a.csv", "")))


def test_geojson_reads_the_cric8_boxes(shared_data: Path) -> None:
    result = geojson.read(ReaderInput(shared_data / "cric8" / "geojson"))

    labels = Counter(box.label for image in result.images for box in image.boxes)
    assert result.problems == []
    assert len(result.images) == 8
    assert all(image.image_path.is_file() for image in result.images)
    assert labels == {"Negative for intraepithelial lesion": 144, "LSIL": 27, "ASC-US": 7}
