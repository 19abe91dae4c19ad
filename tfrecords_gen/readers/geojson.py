"""GeoJSON as QuPath exports it: one file per image, one Polygon or MultiPolygon feature per object.

`--input` is a .geojson/.json file or a folder of them. The image of `name.geojson` is the image
whose stem (or full name, for `name.png.geojson`) is `name`, with any image suffix, in --images
when given, else in `<geojson folder>/../images`, else beside the file; when none is found, the
image path is `<first of those folders>/name` so that validate reports it missing. Accepted
shapes: a FeatureCollection, a bare list of features, a single Feature.

Coordinates are pixels with the origin at the top-left corner (QuPath's convention); a box is the
extent of all rings of the geometry. The label is `properties.classification.name` (QuPath), else
`properties.label`, else `properties.name`. JSON has no useful line numbers: origins name the file
and messages name the feature (`features[3]`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tfrecords_gen.readers.common import (
    ItemError,
    extent,
    image_folders,
    images_by_stem,
    input_files,
    json_number,
    load_json,
    sort_images,
    used_image_dirs,
)
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, Problem, ReaderInput, ReadResult

SUFFIXES = (".geojson", ".json")


def read(source: ReaderInput) -> ReadResult:
    """One ParsedImage per GeoJSON file, one box per feature."""
    paths = input_files(source.input_path, SUFFIXES, "a .geojson/.json file or a folder of them")
    folder_images: dict[Path, dict[str, Path]] = {}  # each folder listed once, however many files
    images: list[ParsedImage] = []
    problems: list[Problem] = []
    for path in paths:
        folders = image_folders(source.images_dir, [path.parent.parent / "images", path.parent])
        for folder in folders:
            if folder not in folder_images:
                folder_images[folder] = images_by_stem(folder)
        found = (folder_images[folder].get(path.stem) for folder in folders)
        image_path = next((image for image in found if image is not None), folders[0] / path.stem)
        boxes = _read_file(path, problems)
        if boxes is not None:
            images.append(ParsedImage(image_path, boxes, Origin(path)))
    return ReadResult(sort_images(images), problems, used_image_dirs(source.images_dir, images))


def _read_file(path: Path, problems: list[Problem]) -> tuple[ParsedBox, ...] | None:
    """The boxes of one file, or None (with a problem) when it is not JSON of an accepted shape."""
    origin = Origin(path)
    data, problem = load_json(path)
    if problem is not None:
        problems.append(problem)
        return None
    try:
        features = _features(data)
    except ItemError as error:
        problems.append(error.problem(origin))
        return None
    boxes = []
    for index, feature in enumerate(features):
        try:
            boxes.append(_parse_feature(feature, origin))
        except ItemError as error:
            problems.append(error.problem(origin, f"features[{index}]"))
    return tuple(boxes)


def _features(data: object) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if (
        isinstance(data, dict)
        and data.get("type") == "FeatureCollection"
        and isinstance(data.get("features"), list)
    ):
        return data["features"]
    shape = data.get("type") if isinstance(data, dict) else type(data).__name__
    raise ItemError(f"expected a FeatureCollection, a Feature or a list of features, got {shape}")


def _parse_feature(feature: object, origin: Origin) -> ParsedBox:
    if not isinstance(feature, dict):
        raise ItemError(f"expected a Feature object, got {json.dumps(feature)[:200]}")
    geometry = feature.get("geometry")
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind == "Polygon":
        polygons = [geometry.get("coordinates")]
    elif kind == "MultiPolygon":
        polygons = geometry.get("coordinates")
    else:
        raise ItemError(f"expected a Polygon or MultiPolygon geometry, got {kind or json.dumps(geometry)}")
    label = _label(feature.get("properties"))
    if label is None:
        message = "no class: expected properties.classification.name, properties.label or properties.name"
        raise ItemError(message, Kind.UNKNOWN_CLASS)
    return ParsedBox(label, *extent(_vertices(polygons)), origin=origin)


def _vertices(polygons: object) -> list[tuple[float, float]]:
    """All vertices of a list of polygons (each a list of rings, each a list of [x, y(, z)])."""
    vertices = []
    try:
        for polygon in polygons:
            for ring in polygon:
                for position in ring:
                    vertices.append((json_number(position[0], "x"), json_number(position[1], "y")))
    except (TypeError, IndexError, KeyError):
        raise ItemError("expected coordinates as lists of rings of [x, y] positions") from None
    if not vertices:
        raise ItemError("expected at least one vertex, got none")
    return vertices


def _label(properties: object) -> str | None:
    """The first non-empty class name among the places QuPath and other tools put it."""
    if not isinstance(properties, dict):
        return None
    classification = properties.get("classification")
    if isinstance(classification, dict):
        names = classification.get("names")  # QuPath 0.4+ derived classes: ["Tumor", "Positive"]
        classification = ": ".join(names) if isinstance(names, list) else classification.get("name")
    for candidate in (classification, properties.get("label"), properties.get("name")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None
