"""The COCO reader: [x, y, width, height] to corners, categories, groups, problems per entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import coco
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, ReaderInput

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]


def coco_json(images: list[dict], annotations: list[dict]) -> str:
    categories = [{"id": 1, "name": "NILM"}, {"id": 2, "name": "LSIL"}]
    return json.dumps({"images": images, "annotations": annotations, "categories": categories})


def test_coco_gives_corner_boxes_sizes_groups_and_unannotated_images(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    beside = write_image(tmp_path / "a.png")
    in_images = write_image(tmp_path / "images" / "b.png")
    images = [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48, "slide_id": 7},
        {"id": 2, "file_name": "b.png", "width": 64, "height": 48, "patient": "P2"},
        {"id": 3, "file_name": "c.png"},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 2, "bbox": [10, 5, 20.5, 20], "iscrowd": 0},
        {"id": 11, "image_id": 2, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},
    ]
    path = write_text(tmp_path / "instances.json", coco_json(images, annotations))

    result = coco.read(ReaderInput(path))

    origin = Origin(path)
    assert result.problems == []
    assert result.images == [
        ParsedImage(
            beside, (ParsedBox("LSIL", 10, 5, 30.5, 25, origin),), origin, width=64, height=48, group="7"
        ),
        ParsedImage(tmp_path / "c.png", (), origin),
        ParsedImage(
            in_images,
            (ParsedBox("NILM", 0, 0, 64, 48, origin, is_crowd=True),),
            origin,
            width=64,
            height=48,
            group="P2",
        ),
    ]
    assert result.image_dirs == [tmp_path, tmp_path / "images"]


def test_coco_unknown_category_bad_bbox_and_unknown_image_are_reported(
    tmp_path: Path, write_text: WriteText
) -> None:
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]},
        {"id": 12, "image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4]},
        {"id": 13, "image_id": 1, "category_id": 1, "bbox": [1, 2, "3", 4]},
        {"id": 14, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
    ]
    path = write_text(tmp_path / "instances.json", coco_json([{"id": 1, "file_name": "a.png"}], annotations))

    result = coco.read(ReaderInput(path, images_dir=tmp_path / "pictures"))

    assert [(problem.origin, problem.kind, problem.message) for problem in result.problems] == [
        (Origin(path), Kind.UNKNOWN_CLASS, 'annotations[0]: category_id 9 is not among the "categories" ids'),
        (
            Origin(path),
            Kind.PARSE_ERROR,
            "annotations[1]: expected bbox [x, y, width, height], got [1, 2, 3]",
        ),
        (
            Origin(path),
            Kind.PARSE_ERROR,
            'annotations[2]: expected the image_id of an entry of "images", got 5',
        ),
        (Origin(path), Kind.PARSE_ERROR, 'annotations[3]: expected a number for bbox width, got "3"'),
    ]
    assert result.images == [
        ParsedImage(
            tmp_path / "pictures" / "a.png", (ParsedBox("NILM", 1, 2, 4, 6, Origin(path)),), Origin(path)
        )
    ]
    assert result.image_dirs == [tmp_path / "pictures"]


def test_coco_bad_image_entries_are_skipped_with_a_problem(tmp_path: Path, write_text: WriteText) -> None:
    images = [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}, {"file_name": "c.png"}]
    path = write_text(tmp_path / "instances.json", coco_json(images, []))

    result = coco.read(ReaderInput(path))

    assert [image.image_path.name for image in result.images] == ["a.png"]
    assert [problem.message.split(":")[0] for problem in result.problems] == ["images[1]", "images[2]"]


def test_coco_invalid_json_and_wrong_shape_are_one_parse_error(tmp_path: Path, write_text: WriteText) -> None:
    broken = write_text(tmp_path / "broken.json", '{"images": [\n  {"id": 1,}\n]}')
    shapeless = write_text(tmp_path / "list.json", "[1, 2]")

    broken_result = coco.read(ReaderInput(broken))
    shapeless_result = coco.read(ReaderInput(shapeless))

    assert broken_result.images == shapeless_result.images == []
    assert [(problem.origin, problem.kind) for problem in broken_result.problems] == [
        (Origin(broken, 2), Kind.PARSE_ERROR)
    ]
    assert [(problem.origin, problem.kind) for problem in shapeless_result.problems] == [
        (Origin(shapeless), Kind.PARSE_ERROR)
    ]


def test_coco_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found; expected a COCO \.json file"):
        coco.read(ReaderInput(tmp_path / "absent.json"))
