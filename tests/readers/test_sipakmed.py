"""The SIPaKMeD reader: class folders, .dat outlines, tolerant parsing, layout problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.readers import sipakmed
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, Problem, ReaderInput

TRIANGLE = "10,5\n30,5\n20,25\n"  # box (10, 5, 30, 25)
SMALL_TRIANGLE = "15,10\n25,10\n20,20\n"  # box (15, 10, 25, 20)

WriteImage = Callable[..., Path]
WriteText = Callable[[Path, str], Path]


def test_sipakmed_nested_twice_gives_cytoplasm_boxes(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Dyskeratotic" / "im_Dyskeratotic"
    image = write_image(folder / "001.bmp")
    first = write_text(folder / "001_cyt01.dat", TRIANGLE)
    second = write_text(folder / "001_cyt02.dat", "40,30\n50,30\n45,40\n")
    write_text(folder / "001_nuc01.dat", SMALL_TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert result.image_dirs == []
    assert result.images == [
        ParsedImage(
            image,
            (
                ParsedBox("Dyskeratotic", 10, 5, 30, 25, Origin(first)),
                ParsedBox("Dyskeratotic", 40, 30, 50, 40, Origin(second)),
            ),
            Origin(first),
        )
    ]


def test_sipakmed_nested_once_and_nucleus_region(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Parabasal"
    image = write_image(folder / "001.bmp")
    write_text(folder / "001_cyt01.dat", TRIANGLE)
    nucleus = write_text(folder / "001_nuc01.dat", SMALL_TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path, sipakmed_region="nucleus"))

    assert result.problems == []
    assert [(parsed.image_path, parsed.boxes) for parsed in result.images] == [
        (image, (ParsedBox("Parabasal", 15, 10, 25, 20, Origin(nucleus)),))
    ]


def test_sipakmed_matches_class_names_inside_folder_names(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    parent = tmp_path / "sipakmed_wsi_pap_smear"
    for folder in ("normal_Parabasal", "abnormal_KOILOCYTOTIC", "normal_superficial_intermediate"):
        write_image(parent / folder / "001.png")
        write_text(parent / folder / "001_cyt01.dat", TRIANGLE)
    images_folder = tmp_path / "im_Metaplastic" / "images"  # class taken from the nearest parent
    write_image(images_folder / "001.bmp")
    write_text(images_folder / "001_cyt01.dat", TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert result.problems == []
    labels = {
        parsed.image_path.relative_to(tmp_path).parts[-2]: parsed.boxes[0].label for parsed in result.images
    }
    assert labels == {
        "images": "Metaplastic",
        "abnormal_KOILOCYTOTIC": "Koilocytotic",
        "normal_Parabasal": "Parabasal",
        "normal_superficial_intermediate": "Superficial-Intermediate",
    }


def test_sipakmed_dat_with_crlf_scientific_notation_and_padding(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Koilocytotic"
    write_image(folder / "001.bmp")
    dat = write_text(
        folder / "001_cyt01.dat", "  1.0000000e+01,   5.0E0\r\n3.0e1 , 5\r\n2e1,2.5e1\r\n\r\n\r\n"
    )

    result = sipakmed.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert result.images[0].boxes == (ParsedBox("Koilocytotic", 10, 5, 30, 25, Origin(dat)),)


def test_sipakmed_bad_lines_are_reported_and_only_that_cell_is_left_out(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Koilocytotic"
    image = write_image(folder / "012.bmp")
    bad = write_text(folder / "012_cyt01.dat", "10,5\n12.5\n20,abc\n30,5\n")
    good = write_text(folder / "012_cyt02.dat", TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert result.problems == [
        Problem(Origin(bad, 2), Kind.PARSE_ERROR, 'expected "x,y", got "12.5"'),
        Problem(Origin(bad, 3), Kind.PARSE_ERROR, 'expected "x,y", got "20,abc"'),
    ]
    assert str(result.problems[0]).endswith('012_cyt01.dat:2: parse_error: expected "x,y", got "12.5"')
    assert result.images == [
        ParsedImage(image, (ParsedBox("Koilocytotic", 10, 5, 30, 25, Origin(good)),), Origin(bad))
    ]


def test_sipakmed_polygon_with_fewer_than_three_vertices_is_a_parse_error(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Koilocytotic"
    write_image(folder / "001.bmp")
    dat = write_text(folder / "001_cyt01.dat", "10,5\n30,5\n")

    result = sipakmed.read(ReaderInput(tmp_path))

    assert [(problem.origin, problem.kind) for problem in result.problems] == [
        (Origin(dat), Kind.PARSE_ERROR)
    ]
    assert "at least 3 vertices, got 2" in result.problems[0].message
    assert result.images[0].boxes == ()


def test_sipakmed_nan_vertex_passes_through_for_validate(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Koilocytotic"
    write_image(folder / "001.bmp")
    write_text(folder / "001_cyt01.dat", "nan,5\n30,5\n20,25\n")

    result = sipakmed.read(ReaderInput(tmp_path))

    box = result.images[0].boxes[0]
    assert result.problems == []
    assert box.x_min != box.x_min and box.x_max != box.x_max  # NaN
    assert (box.y_min, box.y_max) == (5, 25)


def test_sipakmed_emits_unannotated_images_and_images_missing_for_dat_files(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Metaplastic"
    unannotated = write_image(folder / "001.bmp")
    orphan = write_text(folder / "002_cyt01.dat", TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert result.images == [
        ParsedImage(unannotated, (), Origin(unannotated)),
        ParsedImage(
            folder / "002.bmp", (ParsedBox("Metaplastic", 10, 5, 30, 25, Origin(orphan)),), Origin(orphan)
        ),
    ]


def test_sipakmed_ignores_cropped(tmp_path: Path, write_image: WriteImage, write_text: WriteText) -> None:
    folder = tmp_path / "im_Parabasal" / "im_Parabasal"
    image = write_image(folder / "001.bmp")
    write_image(folder / "CROPPED" / "001_01.bmp")
    write_text(folder / "CROPPED" / "001_01_cyt.dat", TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert result.problems == []
    assert [parsed.image_path for parsed in result.images] == [image]


def test_sipakmed_reports_unrecognised_folders_without_failing(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    write_image(tmp_path / "im_Parabasal" / "001.bmp")
    write_image(tmp_path / "extras" / "preview.png")

    result = sipakmed.read(ReaderInput(tmp_path))

    assert [parsed.image_path.name for parsed in result.images] == ["001.bmp"]
    assert [(problem.origin, problem.kind, problem.fatal) for problem in result.problems] == [
        (Origin(tmp_path / "extras"), Kind.UNRECOGNISED_FOLDER, False)
    ]
    assert "Superficial-Intermediate" in result.problems[0].message


def test_sipakmed_oddly_named_dat_file_is_reported_not_fatal(
    tmp_path: Path, write_image: WriteImage, write_text: WriteText
) -> None:
    folder = tmp_path / "im_Parabasal"
    write_image(folder / "001.bmp")
    odd = write_text(folder / "001_01_cyt.dat", TRIANGLE)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert [(problem.origin, problem.kind, problem.fatal) for problem in result.problems] == [
        (Origin(odd), Kind.PARSE_ERROR, False)
    ]


def test_sipakmed_images_are_sorted_by_path(tmp_path: Path, write_image: WriteImage) -> None:
    for name in ("im_Parabasal/002.bmp", "im_Dyskeratotic/003.bmp", "im_Parabasal/001.bmp"):
        write_image(tmp_path / name)

    result = sipakmed.read(ReaderInput(tmp_path))

    assert [str(parsed.image_path.relative_to(tmp_path)) for parsed in result.images] == [
        "im_Dyskeratotic/003.bmp",
        "im_Parabasal/001.bmp",
        "im_Parabasal/002.bmp",
    ]


def test_sipakmed_without_class_folder_names_the_expected_names(
    tmp_path: Path, write_image: WriteImage
) -> None:
    write_image(tmp_path / "pictures" / "001.bmp")

    with pytest.raises(DataError, match=r"im_Parabasal") as raised:
        sipakmed.read(ReaderInput(tmp_path))
    assert "Dyskeratotic" in str(raised.value)


def test_sipakmed_refuses_a_missing_or_file_input_and_an_unknown_region(tmp_path: Path) -> None:
    (tmp_path / "im_Parabasal").mkdir()
    with pytest.raises(DataError, match="not found"):
        sipakmed.read(ReaderInput(tmp_path / "absent"))
    with pytest.raises(DataError, match="is a file"):
        sipakmed.read(ReaderInput(Path(__file__)))
    with pytest.raises(DataError, match='"cytoplasm" or "nucleus", got "cells"'):
        sipakmed.read(ReaderInput(tmp_path, sipakmed_region="cells"))
