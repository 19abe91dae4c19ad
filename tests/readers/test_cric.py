"""The CRIC reader: a box_size square around each nucleus point, clipped later by validate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import cric
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, Problem, ReaderInput

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]

HEADER = "image_id,image_filename,image_doi,cell_id,bethesda_system,nucleus_x,nucleus_y\n"


def test_cric_centres_a_box_on_each_nucleus_and_marks_clipping(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    in_images = write_image(tmp_path / "images" / "a.png")
    beside = write_image(tmp_path / "b.png")
    table = write_text(
        tmp_path / "classifications.csv",
        HEADER
        + "1,a.png,10.1/x,1,ASC-US,30,20\n"
        + "2,b.png,10.1/x,2,Negative for intraepithelial lesion,2,3\n"
        + "1,a.png,10.1/x,3,LSIL,50.5,40\n",
    )

    result = cric.read(ReaderInput(table, box_size=10))

    assert result.problems == []
    assert result.images == [
        ParsedImage(
            beside,
            (ParsedBox("Negative for intraepithelial lesion", -3, -2, 7, 8, Origin(table, 3)),),
            Origin(table, 3),
            clip_to_image=True,
        ),
        ParsedImage(
            in_images,
            (
                ParsedBox("ASC-US", 25, 15, 35, 25, Origin(table, 2)),
                ParsedBox("LSIL", 45.5, 35, 55.5, 45, Origin(table, 4)),
            ),
            Origin(table, 2),
            clip_to_image=True,
        ),
    ]
    assert result.image_dirs == [tmp_path, tmp_path / "images"]


def test_cric_bad_rows_are_reported_at_their_line(tmp_path: Path, write_text: WriteText) -> None:
    table = write_text(
        tmp_path / "classifications.csv",
        HEADER
        + "1,a.png,d,1,LSIL,30,x\n"
        + "1,a.png,d,2,LSIL,30\n"
        + "1,a.png,d,3,,30,20\n"
        + "1,a.png,d,4,LSIL,30,20\n",
    )

    result = cric.read(ReaderInput(table, images_dir=tmp_path / "fields"))

    assert result.problems == [
        Problem(Origin(table, 2), Kind.PARSE_ERROR, 'expected a number for nucleus_y, got "x"'),
        Problem(Origin(table, 3), Kind.PARSE_ERROR, 'expected 7 fields, got 6: "1,a.png,d,2,LSIL,30"'),
        Problem(Origin(table, 4), Kind.PARSE_ERROR, 'expected a value for bethesda_system, got ""'),
    ]
    assert [(image.image_path, len(image.boxes)) for image in result.images] == [
        (tmp_path / "fields" / "a.png", 1)
    ]
    assert result.image_dirs == [tmp_path / "fields"]


def test_cric_refuses_a_box_size_that_is_not_positive(tmp_path: Path, write_text: WriteText) -> None:
    table = write_text(tmp_path / "classifications.csv", HEADER)

    with pytest.raises(DataError, match="box size above 0"):
        cric.read(ReaderInput(table, box_size=0))


def test_cric_reads_the_cric8_subset(shared_data: Path) -> None:
    result = cric.read(ReaderInput(shared_data / "cric8" / "classifications.csv"))

    labels = Counter(box.label for image in result.images for box in image.boxes)
    assert result.problems == []
    assert len(result.images) == 8
    assert labels == {"Negative for intraepithelial lesion": 144, "LSIL": 27, "ASC-US": 7}
    assert all(image.image_path.is_file() and image.group is None for image in result.images)
    assert {box.x_max - box.x_min for image in result.images for box in image.boxes} == {100.0}
