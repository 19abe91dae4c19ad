"""The tutorial CSV reader: rows grouped per filename, exact line numbers in problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import csv_table
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, Problem, ReaderInput

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax"


def test_csv_groups_rows_per_image_with_boxes_as_written(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    first = write_image(tmp_path / "a.png")
    second = write_image(tmp_path / "images" / "b.png")
    table = write_text(
        tmp_path / "labels.csv",
        f"{HEADER},group\n"
        "b.png,64,48,LSIL,1,2,3,4,slide7\n"
        "a.png,64,48,NILM,10,5,30.5,25,slide1\n"
        "b.png,64,48,NILM,5,6,7,8,slide7\n",
    )

    result = csv_table.read(ReaderInput(table))

    assert result.problems == []
    assert result.images == [
        ParsedImage(
            first,
            (ParsedBox("NILM", 10, 5, 30.5, 25, Origin(table, 3)),),
            Origin(table, 3),
            width=64,
            height=48,
            group="slide1",
        ),
        ParsedImage(
            second,
            (
                ParsedBox("LSIL", 1, 2, 3, 4, Origin(table, 2)),
                ParsedBox("NILM", 5, 6, 7, 8, Origin(table, 4)),
            ),
            Origin(table, 2),
            width=64,
            height=48,
            group="slide7",
        ),
    ]
    assert result.image_dirs == [tmp_path, tmp_path / "images"]


def test_csv_bad_value_and_wrong_field_count_name_their_line(tmp_path: Path, write_text: WriteText) -> None:
    table = write_text(
        tmp_path / "labels.csv",
        f"{HEADER}\n"
        "a.png,64,48,NILM,abc,5,30,25\n"
        "\n"
        "a.png,64,48,NILM,1,2,3\n"
        "a.png,64,48,NILM,1,2,3,4\n"
        "a.png,64,48,,1,2,3,4\n",
    )

    result = csv_table.read(ReaderInput(table))

    assert result.problems == [
        Problem(Origin(table, 2), Kind.PARSE_ERROR, 'expected a number for xmin, got "abc"'),
        Problem(Origin(table, 4), Kind.PARSE_ERROR, 'expected 8 fields, got 7: "a.png,64,48,NILM,1,2,3"'),
        Problem(Origin(table, 6), Kind.PARSE_ERROR, 'expected a value for class, got ""'),
    ]
    assert result.images[0].boxes == (ParsedBox("NILM", 1, 2, 3, 4, Origin(table, 5)),)
    assert result.images[0].origin == Origin(table, 5)


def test_csv_quoted_field_over_two_lines_keeps_line_numbers_exact(
    tmp_path: Path, write_text: WriteText
) -> None:
    table = write_text(
        tmp_path / "labels.csv", f'{HEADER}\na.png,64,48,"NI\nLM",1,2,3,4\na.png,64,48,NILM,x,2,3,4\n'
    )

    result = csv_table.read(ReaderInput(table))

    assert result.images[0].boxes == (ParsedBox("NI\nLM", 1, 2, 3, 4, Origin(table, 2)),)
    assert [problem.origin for problem in result.problems] == [Origin(table, 4)]


def test_csv_rows_of_one_image_must_agree_on_size(tmp_path: Path, write_text: WriteText) -> None:
    table = write_text(
        tmp_path / "labels.csv", f"{HEADER}\na.png,64,48,NILM,1,2,3,4\na.png,64,50,NILM,5,6,7,8\n"
    )

    result = csv_table.read(ReaderInput(table))

    assert [(problem.origin, problem.kind) for problem in result.problems] == [
        (Origin(table, 3), Kind.PARSE_ERROR)
    ]
    assert "as on line 2" in result.problems[0].message
    assert len(result.images[0].boxes) == 1


def test_csv_nan_passes_through_and_images_dir_wins(tmp_path: Path, write_text: WriteText) -> None:
    table = write_text(tmp_path / "labels.csv", f"{HEADER}\na.png,,,NILM,nan,2,3,4\n")

    result = csv_table.read(ReaderInput(table, images_dir=tmp_path / "pictures"))

    image = result.images[0]
    assert result.problems == []
    assert (image.image_path, image.width, image.height, image.group) == (
        tmp_path / "pictures" / "a.png",
        None,
        None,
        None,
    )
    assert image.boxes[0].x_min != image.boxes[0].x_min  # NaN, for validate to report
    assert result.image_dirs == [tmp_path / "pictures"]


def test_csv_missing_column_is_one_parse_error_at_the_header(tmp_path: Path, write_text: WriteText) -> None:
    table = write_text(tmp_path / "labels.csv", "filename,class,xmin,ymin,xmax,ymax\na.png,NILM,1,2,3,4\n")

    result = csv_table.read(ReaderInput(table))

    assert result.images == []
    assert [(problem.origin, problem.kind) for problem in result.problems] == [
        (Origin(table, 1), Kind.PARSE_ERROR)
    ]


def test_csv_refuses_a_missing_file_or_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        csv_table.read(ReaderInput(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="is a folder"):
        csv_table.read(ReaderInput(tmp_path))


def test_csv_reads_the_isbi_nuclei(shared_data: Path) -> None:
    result = csv_table.read(ReaderInput(shared_data / "isbi2014_edf_nuclei_csv" / "annotations.csv"))

    assert result.problems == []
    assert len(result.images) == 12
    assert sum(len(image.boxes) for image in result.images) == 446
    assert all(image.image_path.is_file() and image.width == image.height == 1024 for image in result.images)
