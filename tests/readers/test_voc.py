"""The Pascal VOC reader: 1-based corners to pixel edges, image lookup, problems per object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import voc
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, ReaderInput

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]


def voc_xml(
    filename: str, objects: str, size: str = "<width>64</width><height>48</height>", path: str = ""
) -> str:
    """A LabelImg-style annotation; each object starts on its own line so that tests know its line."""
    return (
        "<annotation>\n"
        "  <folder>images</folder>\n"
        f"  <filename>{filename}</filename>\n"
        f"  <path>{path}</path>\n"
        f"  <size>{size}<depth>3</depth></size>\n"
        f"{objects}"
        "</annotation>\n"
    )


def voc_object(
    name: str, corners: tuple[str, str, str, str], difficult: str = "0", truncated: str = "0"
) -> str:
    xmin, ymin, xmax, ymax = corners
    return (
        f"  <object><name>{name}</name><truncated>{truncated}</truncated><difficult>{difficult}</difficult>\n"
        f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
        "  </object>\n"
    )


def test_voc_converts_one_based_inclusive_corners_to_pixel_edges(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    image = write_image(tmp_path / "a.png")
    objects = voc_object("cell", ("1", "1", "10", "20")) + voc_object(
        "nucleus", ("5", "6", "7.5", "8"), difficult="1", truncated="1"
    )
    xml = write_text(tmp_path / "a.xml", voc_xml("a.png", objects))

    result = voc.read(ReaderInput(xml))

    assert result.problems == []
    assert result.image_dirs == [tmp_path]
    assert result.images == [
        ParsedImage(
            image,
            (
                ParsedBox("cell", 0, 0, 10, 20, Origin(xml, 6)),
                ParsedBox("nucleus", 4, 5, 7.5, 8, Origin(xml, 9), difficult=True, truncated=True),
            ),
            Origin(xml),
            width=64,
            height=48,
        )
    ]


def test_voc_image_lookup_prefers_images_dir_then_beside_then_path(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    annotations = tmp_path / "annotations"
    elsewhere = write_image(tmp_path / "elsewhere" / "b.png")
    write_text(annotations / "a.xml", voc_xml("a.png", ""))
    write_text(annotations / "b.xml", voc_xml("b.png", "", path=str(elsewhere)))

    beside = voc.read(ReaderInput(annotations))
    given = voc.read(ReaderInput(annotations, images_dir=tmp_path / "images"))

    assert [image.image_path for image in beside.images] == [annotations / "a.png", elsewhere]
    assert beside.image_dirs == [annotations, elsewhere.parent]
    assert [image.image_path for image in given.images] == [
        tmp_path / "images" / "a.png",
        tmp_path / "images" / "b.png",
    ]
    assert given.image_dirs == [tmp_path / "images"]


def test_voc_bad_coordinate_drops_only_that_object(tmp_path: Path, write_text: WriteText) -> None:
    objects = voc_object("cell", ("1", "1", "abc", "20")) + voc_object("cell", ("2", "3", "4", "5"))
    xml = write_text(tmp_path / "a.xml", voc_xml("a.png", objects))

    result = voc.read(ReaderInput(xml))

    assert [(problem.origin, problem.kind, problem.message) for problem in result.problems] == [
        (Origin(xml, 6), Kind.PARSE_ERROR, 'expected a number for xmax, got "abc"')
    ]
    assert result.images[0].boxes == (ParsedBox("cell", 1, 2, 4, 5, Origin(xml, 9)),)


def test_voc_missing_name_or_bndbox_and_bad_flag_are_parse_errors(
    tmp_path: Path, write_text: WriteText
) -> None:
    objects = (
        "  <object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>\n"
        "  <object><name>cell</name></object>\n" + voc_object("cell", ("1", "1", "2", "2"), difficult="yes")
    )
    xml = write_text(tmp_path / "a.xml", voc_xml("a.png", objects))

    result = voc.read(ReaderInput(xml))

    assert [(problem.origin.line, problem.kind) for problem in result.problems] == [
        (6, Kind.PARSE_ERROR),
        (7, Kind.PARSE_ERROR),
        (8, Kind.PARSE_ERROR),
    ]
    assert result.problems[2].message == 'expected 0 or 1 for difficult, got "yes"'
    assert result.images[0].boxes == ()


def test_voc_size_zero_or_absent_is_not_declared_and_bad_size_is_not_fatal(
    tmp_path: Path, write_text: WriteText
) -> None:
    zero = write_text(
        tmp_path / "zero.xml", voc_xml("zero.png", "", size="<width>0</width><height>0</height>")
    )
    absent = write_text(tmp_path / "absent.xml", voc_xml("absent.png", "", size=""))
    bad = write_text(
        tmp_path / "bad.xml", voc_xml("bad.png", "", size="<width>wide</width><height>48</height>")
    )

    result = voc.read(ReaderInput(tmp_path))

    assert [(image.width, image.height) for image in result.images] == [(None, None)] * 3
    assert [(problem.origin, problem.kind, problem.fatal) for problem in result.problems] == [
        (Origin(bad, 5), Kind.PARSE_ERROR, False)
    ]
    assert {zero, absent} < {image.origin.path for image in result.images}


def test_voc_invalid_file_is_reported_and_the_others_are_read(tmp_path: Path, write_text: WriteText) -> None:
    broken = write_text(tmp_path / "a.xml", "<annotation><filename>a.png</filename>")
    other_root = write_text(tmp_path / "b.xml", "<voc>\n</voc>\n")
    write_text(tmp_path / "c.xml", voc_xml("c.png", voc_object("cell", ("1", "1", "2", "2"))))

    result = voc.read(ReaderInput(tmp_path))

    assert [image.image_path.name for image in result.images] == ["c.png"]
    assert [(problem.origin.path, problem.kind) for problem in result.problems] == [
        (broken, Kind.PARSE_ERROR),
        (other_root, Kind.PARSE_ERROR),
    ]
    assert result.problems[1].message == "expected an <annotation> root element, got <voc>"


def test_voc_refuses_missing_input_and_folder_without_xml(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        voc.read(ReaderInput(tmp_path / "absent.xml"))
    with pytest.raises(DataError, match=r"no \.xml file"):
        voc.read(ReaderInput(tmp_path))


def test_voc_reads_the_isbi_cells(shared_data: Path) -> None:
    data = shared_data / "isbi2014_cells_voc"

    result = voc.read(ReaderInput(data / "annotations", images_dir=data / "images"))

    assert result.problems == []
    assert len(result.images) == 45
    assert sum(len(image.boxes) for image in result.images) == 270
    assert {box.label for image in result.images for box in image.boxes} == {"cell"}
    assert all(image.image_path.is_file() and image.width == image.height == 512 for image in result.images)
