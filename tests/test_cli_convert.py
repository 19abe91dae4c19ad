"""`cervical-tf convert / sample / stats`: the CLI contract scripts rely on."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cervical_tf.cli import main
from tfrecords_gen.sample import SampleSpec, generate_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample") / "sipakmed"
    generate_sample(folder, SampleSpec(images=20, width=320, height=256, seed=1), progress=False)
    return folder


def convert(*arguments: str | Path) -> int:
    return main(["convert", *map(str, arguments)])


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_cli_convert_writes_the_promised_files(sample: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert (
        convert("--format", "sipakmed", "--input", sample, "--output", out, "--seed", "4", "--workers", "2")
        == 0
    )
    names = {path.name for path in out.iterdir()}
    assert {"label_map.pbtxt", "splits.csv", "dataset_stats.json"} <= names
    for split in ("train", "val", "test"):
        assert f"{split}_coco.json" in names
        assert any(name.startswith(f"{split}-00000-of-") and name.endswith(".tfrecord") for name in names)
    stats = json.loads((out / "dataset_stats.json").read_text())
    assert sum(split["images"] for split in stats["splits"].values()) == 20
    assert set(stats["splits"]["train"]["classes"]) == {
        "Dyskeratotic",
        "Koilocytotic",
        "Metaplastic",
        "Parabasal",
        "Superficial-Intermediate",
    }
    printed = capsys.readouterr().out
    assert "images/s" in printed and "Superficial-Intermediate" in printed and "train: " in printed


def test_cli_convert_no_image_or_group_in_two_splits(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert convert("--format", "sipakmed", "--input", sample, "--output", out) == 0
    rows = read_manifest(out / "splits.csv")
    assert len({row["image"] for row in rows}) == len(rows) == 20
    split_of_group: dict[str, set[str]] = {}
    for row in rows:
        split_of_group.setdefault(row["group"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_group.values())
    for split in ("train", "val", "test"):
        coco = json.loads((out / f"{split}_coco.json").read_text())
        assert sorted(image["file_name"] for image in coco["images"]) == sorted(
            row["image"] for row in rows if row["split"] == split
        )


def test_cli_convert_reuses_a_manifest_exactly(sample: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert convert("--format", "sipakmed", "--input", sample, "--output", first, "--seed", "1") == 0
    assert (
        convert(
            "--format",
            "sipakmed",
            "--input",
            sample,
            "--output",
            second,
            "--seed",
            "99",
            "--splits",
            first / "splits.csv",
        )
        == 0
    )
    assert (first / "splits.csv").read_text() == (second / "splits.csv").read_text()


def test_cli_convert_everything_to_train(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        convert("--format", "sipakmed", "--input", sample, "--output", out, "--val", "0", "--test", "0") == 0
    )
    assert {row["split"] for row in read_manifest(out / "splits.csv")} == {"train"}
    assert not list(out.glob("val*")) and not list(out.glob("test*"))


def test_cli_convert_folds(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        convert("--format", "sipakmed", "--input", sample, "--output", out, "--folds", "3", "--test", "0")
        == 0
    )
    for fold in ("fold-1", "fold-2", "fold-3"):
        assert (out / fold / "label_map.pbtxt").exists()
        assert list((out / fold).glob("train-*.tfrecord")) and list((out / fold).glob("val-*.tfrecord"))
    assert {row["split"] for row in read_manifest(out / "splits.csv")} == {"fold-1", "fold-2", "fold-3"}


def write_bad_csv(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir()
    Image.new("RGB", (100, 80), (230, 220, 225)).save(folder / "a.png")
    annotations = folder / "annotations.csv"
    annotations.write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\n"
        "a.png,100,80,NILM,10,10,40,40\n"
        "a.png,100,80,NILM,50,50,45,60\n"  # line 3: degenerate
        "missing.png,100,80,NILM,1,1,20,20\n"  # line 4: no image
    )
    return annotations


def test_cli_convert_bad_input_fails_with_every_problem_and_writes_nothing(tmp_path: Path, capsys) -> None:
    annotations = write_bad_csv(tmp_path / "data")
    out = tmp_path / "out"
    assert (
        convert("--format", "csv", "--input", annotations, "--output", out, "--val", "0", "--test", "0") == 2
    )
    errors = capsys.readouterr().err
    assert f"{annotations}:3: degenerate_box" in errors
    assert f"{annotations}:4: missing_image" in errors
    assert "nothing was written" in errors
    assert not out.exists()


def test_cli_convert_skip_writes_rejected_csv(tmp_path: Path) -> None:
    annotations = write_bad_csv(tmp_path / "data")
    out = tmp_path / "out"
    assert (
        convert(
            "--format",
            "csv",
            "--input",
            annotations,
            "--output",
            out,
            "--val",
            "0",
            "--test",
            "0",
            "--on-error",
            "skip",
        )
        == 0
    )
    rejected = read_manifest(out / "rejected.csv")
    assert [(row["line"], row["kind"]) for row in rejected] == [
        ("3", "degenerate_box"),
        ("4", "missing_image"),
    ]
    assert json.loads((out / "dataset_stats.json").read_text())["splits"]["train"]["boxes"] == 1


def test_cli_stats_prints_the_table(sample: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert convert("--format", "sipakmed", "--input", sample, "--output", out) == 0
    capsys.readouterr()
    assert main(["stats", str(out)]) == 0
    table = capsys.readouterr().out
    assert "width px p5/p50/p95" in table and "Koilocytotic" in table
    assert main(["stats", str(tmp_path / "nowhere")]) == 2


def test_cli_sample_refuses_to_overwrite(sample: Path, capsys) -> None:
    assert main(["sample", "--out", str(sample), "--images", "5"]) == 2
    assert str(sample) in capsys.readouterr().err


def test_cli_mistyped_verb_gets_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["convrt"])
    assert exit_info.value.code == 2
    assert "did you mean convert" in capsys.readouterr().err


def test_cli_sample_bad_arguments_exit_2_with_a_message(tmp_path: Path, capsys) -> None:
    assert main(["sample", "--out", str(tmp_path / "s"), "--images", "0"]) == 2
    assert "images" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("fmt", "relative_input", "images", "boxes"),
    [
        ("cric", "cric8/classifications.csv", 8, 178),
        ("geojson", "cric8/geojson", 8, 178),
        ("voc", "isbi2014_cells_voc/annotations", 45, 270),
        ("csv", "isbi2014_edf_nuclei_csv/annotations.csv", 12, 446),
    ],
)
def test_cli_convert_real_data_without_errors(
    shared_data: Path, tmp_path: Path, capsys, fmt: str, relative_input: str, images: int, boxes: int
) -> None:
    out = tmp_path / fmt
    assert convert("--format", fmt, "--input", shared_data / relative_input, "--output", out) == 0
    assert "error:" not in capsys.readouterr().err
    stats = json.loads((out / "dataset_stats.json").read_text())["splits"]
    assert sum(split["images"] for split in stats.values()) == images
    assert sum(split["boxes"] for split in stats.values()) == boxes


def test_cli_convert_refuses_a_manifest_that_splits_a_group_of_this_run(
    sample: Path, tmp_path: Path, capsys
) -> None:
    """First run: every image its own group. Second run groups images by number and reuses the manifest."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert convert("--format", "sipakmed", "--input", sample, "--output", first, "--seed", "1") == 0
    split_of = {row["image"]: row["split"] for row in read_manifest(first / "splits.csv")}
    straddling = sorted(
        number
        for number in {image.split("/")[-1][:3] for image in split_of}
        if len({split for image, split in split_of.items() if image.endswith(f"/{number}.bmp")}) > 1
    )
    assert straddling  # the per-image split put images of one number into different splits
    capsys.readouterr()
    reuse = ("--splits", first / "splits.csv", "--group-pattern", r"(\d+)\.bmp$")
    assert convert("--format", "sipakmed", "--input", sample, "--output", second, *reuse) == 2
    error = capsys.readouterr().err
    assert f"group '{straddling[0]}'" in error and f"/{straddling[0]}.bmp" in error
    assert str(first / "splits.csv") in error
    assert not second.exists()


def test_cli_convert_stats_list_each_box_by_image_size_one_per_line(sample: Path, tmp_path: Path) -> None:
    """What anchor fitting reads: every box's corners, grouped by the size of its image."""
    out = tmp_path / "out"
    assert convert("--format", "sipakmed", "--input", sample, "--output", out) == 0
    text = (out / "dataset_stats.json").read_text()
    splits = json.loads(text)["splits"]
    for split, numbers in splits.items():
        coco = json.loads((out / f"{split}_coco.json").read_text())
        expected = sorted([x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in coco["annotations"]))
        assert numbers["boxes_by_image_size"].keys() == {"320x256"}  # the sample's one image size
        listed = sorted(numbers["boxes_by_image_size"]["320x256"])
        assert len(listed) == len(expected) == numbers["boxes"]
        np.testing.assert_allclose(listed, expected, atol=0.05)  # rounded to 0.1 px
    box_lines = re.findall(r"^ +\[[-\d.e]+, [-\d.e]+, [-\d.e]+, [-\d.e]+\],?$", text, flags=re.MULTILINE)
    assert len(box_lines) == sum(numbers["boxes"] for numbers in splits.values())
