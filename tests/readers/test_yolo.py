"""The YOLO reader: layouts, class names, denormalization with the real image size, problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import yolo
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, ReaderInput

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]


def test_yolo_side_by_side_denormalizes_with_the_image_size(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    write_text(tmp_path / "classes.txt", "NILM\nLSIL\n\n")
    annotated = write_image(tmp_path / "a.png", 64, 48)
    unannotated = write_image(tmp_path / "b.bmp", 64, 48)
    labels = write_text(tmp_path / "a.txt", "1 0.5 0.5 0.25 0.5\r\n\r\n0 0.125 0.25 0.25 0.5\r\n")

    result = yolo.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert result.image_dirs == []
    assert result.images == [
        ParsedImage(
            annotated,
            (
                ParsedBox("LSIL", 24, 12, 40, 36, Origin(labels, 1)),
                ParsedBox("NILM", 0, 0, 16, 24, Origin(labels, 3)),
            ),
            Origin(labels),
        ),
        ParsedImage(unannotated, (), Origin(unannotated)),
    ]


@pytest.mark.parametrize(
    ("images_folder", "labels_folder"),
    [("images/train", "labels/train"), ("train/images", "train/labels"), ("images", "labels")],
)
def test_yolo_pairs_images_and_labels_folders(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText, images_folder: str, labels_folder: str
) -> None:
    write_text(tmp_path / "data.yaml", "path: .\nnames:\n  0: NILM\n  1: LSIL\n")
    image = write_image(tmp_path / images_folder / "a.png", 100, 50)
    labels = write_text(tmp_path / labels_folder / "a.txt", "1 0.5 0.5 0.2 0.4\n")

    result = yolo.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert result.images == [
        ParsedImage(image, (ParsedBox("LSIL", 40, 15, 60, 35, Origin(labels, 1)),), Origin(labels))
    ]


def test_yolo_class_names_from_a_yaml_list(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    write_text(tmp_path / "data.yaml", "names: [NILM, ASC-US]\n")
    write_image(tmp_path / "a.png")
    write_text(tmp_path / "a.txt", "1 0.5 0.5 0.5 0.5\n")

    result = yolo.read(ReaderInput(tmp_path))

    assert [box.label for box in result.images[0].boxes] == ["ASC-US"]


def test_yolo_bad_lines_are_reported_and_the_rest_is_kept(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    write_text(tmp_path / "classes.txt", "NILM\nLSIL\n")
    write_image(tmp_path / "a.png", 64, 48)
    labels = write_text(
        tmp_path / "a.txt",
        "7 0.5 0.5 0.25 0.5\n"
        "0 0.5 0.5 0.25\n"
        "0 0.1 0.1 0.2 0.1 0.2 0.2\n"
        "0 0.5 x 0.25 0.5\n"
        "0 0.5 0.5 0.25 0.5\n",
    )

    result = yolo.read(ReaderInput(tmp_path))

    assert [(problem.origin, problem.kind) for problem in result.problems] == [
        (Origin(labels, 1), Kind.UNKNOWN_CLASS),
        (Origin(labels, 2), Kind.PARSE_ERROR),
        (Origin(labels, 3), Kind.PARSE_ERROR),
        (Origin(labels, 4), Kind.PARSE_ERROR),
    ]
    assert "class index 7" in result.problems[0].message
    assert "segmentation polygons" in result.problems[2].message
    assert result.problems[3].message == 'expected a number for y_center, got "x"'
    assert result.images[0].boxes == (ParsedBox("NILM", 24, 12, 40, 36, Origin(labels, 5)),)


def test_yolo_unreadable_image_is_reported_and_skipped(tmp_path: Path, write_text: WriteText) -> None:
    write_text(tmp_path / "classes.txt", "NILM\n")
    broken = write_text(tmp_path / "a.png", "not an image")
    write_text(tmp_path / "a.txt", "0 0.5 0.5 0.25 0.5\n")

    result = yolo.read(ReaderInput(tmp_path))

    assert result.images == []
    assert [(problem.origin, problem.kind) for problem in result.problems] == [
        (Origin(broken), Kind.UNREADABLE_IMAGE)
    ]


def test_yolo_reports_label_files_without_image_and_unrecognised_folders(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    write_text(tmp_path / "classes.txt", "NILM\n")
    write_image(tmp_path / "images" / "a.png")
    orphan = write_text(tmp_path / "labels" / "b.txt", "0 0.5 0.5 0.25 0.5\n")
    write_image(tmp_path / "previews" / "a.png")

    result = yolo.read(ReaderInput(tmp_path))

    assert [image.image_path for image in result.images] == [tmp_path / "images" / "a.png"]
    assert [(problem.origin, problem.kind, problem.fatal) for problem in result.problems] == [
        (Origin(tmp_path / "previews"), Kind.UNRECOGNISED_FOLDER, False),
        (Origin(orphan), Kind.MISSING_IMAGE, True),
    ]


def test_yolo_without_class_names_says_where_it_looked(tmp_path: Path, write_image: WriteImage) -> None:
    write_image(tmp_path / "a.png")

    with pytest.raises(DataError, match=r"classes\.txt") as raised:
        yolo.read(ReaderInput(tmp_path))
    assert "data.yaml" in str(raised.value)


def test_yolo_refuses_bad_class_files_and_a_file_input(tmp_path: Path, write_text: WriteText) -> None:
    classes = write_text(tmp_path / "classes.txt", "NILM\n\nLSIL\n")
    with pytest.raises(DataError, match=r"classes.txt:2: expected a class name"):
        yolo.read(ReaderInput(tmp_path))
    classes.unlink()
    write_text(tmp_path / "data.yaml", "nc: 2\n")
    with pytest.raises(DataError, match="expected names:"):
        yolo.read(ReaderInput(tmp_path))
    with pytest.raises(DataError, match="is a file"):
        yolo.read(ReaderInput(tmp_path / "data.yaml"))


def test_yolo_refuses_a_folder_without_images(tmp_path: Path, write_text: WriteText) -> None:
    write_text(tmp_path / "classes.txt", "NILM\n")
    write_text(tmp_path / "a.txt", "0 0.5 0.5 0.25 0.5\n")

    with pytest.raises(DataError, match="no images"):
        yolo.read(ReaderInput(tmp_path))
