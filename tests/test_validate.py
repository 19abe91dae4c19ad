"""validate: every kind of bad input is reported with its file and line, and nothing else is dropped."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from oriented_images import save_oriented
from PIL import Image

from cervical_tf.errors import DataError
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, ReadResult
from tfrecords_gen.validate import ValidationOptions, validate

ANNOTATIONS = Path("annotations.csv")


def make_image(
    path: Path, size: tuple[int, int] = (200, 100), color: tuple[int, int, int] = (200, 180, 190)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def box(label: str, x_min: float, y_min: float, x_max: float, y_max: float, line: int = 2) -> ParsedBox:
    return ParsedBox(label, x_min, y_min, x_max, y_max, Origin(ANNOTATIONS, line))


def parsed(path: Path, *boxes: ParsedBox, **fields: object) -> ParsedImage:
    return ParsedImage(
        path, tuple(boxes), Origin(ANNOTATIONS, boxes[0].origin.line if boxes else None), **fields
    )


def run(*images: ParsedImage, image_dirs: tuple[Path, ...] = (), **options: object):
    return validate(
        ReadResult(list(images), image_dirs=list(image_dirs)),
        ValidationOptions(**options),
        workers=1,
        progress=False,
    )


def kinds(result) -> list[tuple[str, int | None, bool]]:
    return [(problem.kind, problem.origin.line, problem.fatal) for problem in result.problems]


def test_validate_good_image_becomes_record_with_true_size_and_name(tmp_path: Path) -> None:
    image = make_image(tmp_path / "slide1" / "a.png")
    make_image(tmp_path / "slide2" / "b.png", color=(10, 20, 30))
    result = run(
        parsed(image, box("NILM", 10, 20, 50, 60)),
        parsed(tmp_path / "slide2" / "b.png", box("LSIL", 0, 0, 200, 100)),
    )
    assert result.problems == []
    first = result.records[0]
    assert (first.width, first.height, first.name, first.group) == (200, 100, "slide1/a.png", "slide1/a.png")
    assert [(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in first.boxes] == [("NILM", 10, 20, 50, 60)]


def test_validate_box_slightly_outside_is_clipped_with_a_warning(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    result = run(parsed(image, box("NILM", -1.5, 10, 201, 50, line=7)))
    assert kinds(result) == [(Kind.BOX_CLIPPED, 7, False)]
    clipped = result.records[0].boxes[0]
    assert (clipped.x_min, clipped.x_max) == (0, 200)


def test_validate_box_far_outside_is_rejected(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    result = run(parsed(image, box("NILM", 10, 10, 50, 50), box("NILM", 150, 10, 230, 50, line=3)))
    assert kinds(result) == [(Kind.BOX_OUTSIDE, 3, True)]
    assert len(result.records[0].boxes) == 1


def test_validate_points_meant_to_be_clipped_are_clipped_silently(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    result = run(parsed(image, box("ASC-US", -50, -50, 50, 50), clip_to_image=True))
    assert result.problems == []
    assert result.records[0].boxes[0].x_min == 0


def test_validate_nan_and_degenerate_boxes_are_reported(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    result = run(
        parsed(
            image,
            box("NILM", float("nan"), 1, 5, 5, line=2),
            box("NILM", 5, 5, 5, 9, line=3),
            box("NILM", 9, 5, 4, 9, line=4),
            box("NILM", 1, 1, 20, 20, line=5),
        )
    )
    assert kinds(result) == [
        (Kind.NAN, 2, True),
        (Kind.DEGENERATE_BOX, 3, True),
        (Kind.DEGENERATE_BOX, 4, True),
    ]
    assert len(result.records[0].boxes) == 1


def test_validate_declared_size_must_match_the_file(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png", size=(200, 100))
    result = run(parsed(image, box("NILM", 1, 1, 5, 5), width=100, height=200))
    assert kinds(result) == [(Kind.SIZE_MISMATCH, 2, True)]
    assert "annotation says 100x200" in result.problems[0].message
    assert result.records == []


def test_validate_takes_boxes_in_the_displayed_frame_of_an_exif_rotated_image(tmp_path: Path) -> None:
    """Stored 200 wide and 100 high, shown 100 wide and 200 high (EXIF orientation 6): a box low
    in the displayed image is inside it, though below the stored pixels."""
    displayed = np.full((200, 100, 3), 200, dtype=np.uint8)
    image = save_oriented(tmp_path / "a.jpg", displayed, 6)
    result = run(parsed(image, box("NILM", 10, 150, 60, 190), width=100, height=200))
    assert result.problems == []
    record = result.records[0]
    assert (record.width, record.height) == (100, 200)
    assert [(b.x_min, b.y_min, b.x_max, b.y_max) for b in record.boxes] == [(10, 150, 60, 190)]


def test_validate_size_mismatch_of_the_stored_frame_names_the_exif_orientation(tmp_path: Path) -> None:
    displayed = np.full((200, 100, 3), 200, dtype=np.uint8)
    image = save_oriented(tmp_path / "a.jpg", displayed, 6)
    result = run(parsed(image, box("NILM", 1, 1, 5, 5), width=200, height=100))
    assert kinds(result) == [(Kind.SIZE_MISMATCH, 2, True)]
    message = result.problems[0].message
    assert "annotation says 200x100" in message and "100x200 as displayed" in message
    assert "EXIF orientation 6" in message and "annotations must be in the displayed frame" in message


def test_validate_missing_unreadable_and_truncated_images(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image")
    full = make_image(tmp_path / "full.png", size=(400, 300))
    Image.effect_noise((400, 300), 50).convert("RGB").save(
        full
    )  # noise: compresses badly, so truncation shows
    (tmp_path / "cut.png").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    result = run(
        parsed(tmp_path / "nowhere.png", box("NILM", 1, 1, 5, 5, line=2)),
        parsed(tmp_path / "text.png", box("NILM", 1, 1, 5, 5, line=3)),
        parsed(tmp_path / "cut.png", box("NILM", 1, 1, 5, 5, line=4)),
    )
    assert sorted(kinds(result)) == sorted(
        [(Kind.MISSING_IMAGE, 2, True), (Kind.UNREADABLE_IMAGE, 3, True), (Kind.TRUNCATED_IMAGE, 4, True)]
    )
    assert result.records == []


def test_validate_same_content_under_two_names_is_a_duplicate(tmp_path: Path) -> None:
    first = make_image(tmp_path / "a.png")
    second = tmp_path / "copy_of_a.png"
    second.write_bytes(first.read_bytes())
    result = run(parsed(first, box("NILM", 1, 1, 5, 5)), parsed(second, box("NILM", 1, 1, 5, 5, line=9)))
    assert kinds(result) == [(Kind.DUPLICATE_IMAGE, 9, True)]
    assert [record.name for record in result.records] == ["a.png"]


def test_validate_same_path_annotated_twice_is_a_duplicate(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    result = run(parsed(image, box("NILM", 1, 1, 5, 5)), parsed(image, box("NILM", 1, 1, 5, 5, line=8)))
    assert kinds(result) == [(Kind.DUPLICATE_IMAGE, 8, True)]


def test_validate_image_without_annotation_is_reported_unless_negatives_are_kept(tmp_path: Path) -> None:
    annotated = make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png", color=(1, 2, 3))
    strict = run(parsed(annotated, box("NILM", 1, 1, 5, 5)), image_dirs=(tmp_path,))
    assert [(p.kind, p.origin.path.name, p.fatal) for p in strict.problems] == [
        (Kind.UNANNOTATED_IMAGE, "b.png", True)
    ]
    assert len(strict.records) == 1
    lenient = run(parsed(annotated, box("NILM", 1, 1, 5, 5)), image_dirs=(tmp_path,), keep_negatives=True)
    assert [(p.kind, p.fatal) for p in lenient.problems] == [(Kind.UNANNOTATED_IMAGE, False)]
    assert [(record.name, record.boxes) for record in lenient.records][1] == ("b.png", ())


def test_validate_unknown_class_against_a_fixed_label_map(tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png")
    result = run(
        parsed(image, box("NILM", 1, 1, 5, 5), box("HSIL?", 1, 1, 5, 5, line=3)),
        known_labels=frozenset({"NILM", "HSIL"}),
    )
    assert kinds(result) == [(Kind.UNKNOWN_CLASS, 3, True)]
    assert "'HSIL?'" in result.problems[0].message


def test_validate_group_pattern_and_format_group(tmp_path: Path) -> None:
    one = make_image(tmp_path / "slide7_field1.png")
    two = make_image(tmp_path / "slide7_field2.png", color=(3, 3, 3))
    result = run(
        parsed(one, box("NILM", 1, 1, 5, 5)),
        parsed(two, box("NILM", 1, 1, 5, 5)),
        group_pattern=re.compile(r"^(slide\d+)_"),
    )
    assert {record.group for record in result.records} == {"slide7"}
    grouped = run(parsed(one, box("NILM", 1, 1, 5, 5), group="patient-3"))
    assert grouped.records[0].group == "patient-3"
    with pytest.raises(DataError, match=r"does not match image 'slide7_field1\.png'"):
        run(parsed(one, box("NILM", 1, 1, 5, 5)), group_pattern=re.compile(r"^patient"))
