"""`cervical-tf predict` end to end on the fake export: inputs, outputs, bad images, filtering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_export import add_model_card, write_fake_export
from PIL import Image

from cervical_tf import cli
from cervical_tf.errors import DataError
from cervical_tf.export.model_card import MODEL_CARD, SYNTHETIC_WARNING
from cervical_tf.inference.outputs import WARNING_RED


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_export(tmp_path_factory.mktemp("export"))


def save_image(
    path: Path, dark: tuple[int, int, int, int] | None = (20, 30, 60, 50), grey: bool = False
) -> Path:
    """A 120 x 90 white PNG with a dark rectangle (x0, y0, x1, y1) and optionally a grey one."""
    pixels = np.full((90, 120, 3), 255, dtype=np.uint8)
    if dark is not None:
        x0, y0, x1, y1 = dark
        pixels[y0:y1, x0:x1] = 0
    if grey:
        pixels[60:80, 80:110] = 90
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def predict(export_dir: Path, output: Path, *arguments: str) -> int:
    """Run the real `cervical-tf` entry point in-process; its exit status."""
    return cli.main(["predict", "--model", str(export_dir), "--output", str(output), *arguments])


def test_predict_files_folders_and_globs(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    single = save_image(tmp_path / "single.png")
    save_image(tmp_path / "folder" / "b.png", dark=(0, 0, 10, 10))
    save_image(tmp_path / "folder" / "a.png")
    (tmp_path / "folder" / "notes.txt").write_text("not an image", encoding="utf-8")
    save_image(tmp_path / "globbed" / "a.png")
    save_image(tmp_path / "globbed" / "c.png", dark=None)
    output = tmp_path / "results"

    status = predict(
        export_dir, output, str(single), str(tmp_path / "folder"), str(tmp_path / "globbed" / "*.png")
    )

    assert status == 0
    names = [
        str(single),
        *(str(tmp_path / f) for f in ("folder/a.png", "folder/b.png", "globbed/a.png", "globbed/c.png")),
    ]
    entries = json.loads((output / "detections.json").read_text())
    assert [entry["image"] for entry in entries] == names
    assert entries[0]["detections"][0]["box"] == [20, 30, 60, 50]
    assert entries[0]["detections"][0]["class"] == "dark"
    assert entries[4]["detections"] == []
    coco = json.loads((output / "coco_results.json").read_text())
    assert [result["image_id"] for result in coco] == [1, 2, 3, 4]
    assert coco[0]["bbox"] == [20, 30, 40, 20]
    assert sorted(path.name for path in (output / "overlays").iterdir()) == [
        "b.png",
        "c.png",
        "folder_a.png",  # two images share the stem "a": their folders tell them apart
        "globbed_a.png",
        "single.png",
    ]
    for name in ("detections.csv", "detections.geojson"):
        assert (output / name).is_file()
    printed = capsys.readouterr().out
    assert "total" in printed and "dark" in printed
    assert f"to {output}/" in printed


def test_predict_skips_corrupt_image_and_writes_the_rest(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    good = save_image(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    output = tmp_path / "results"

    assert predict(export_dir, output, str(broken), str(good)) == 0

    assert "broken.png" in capsys.readouterr().err
    entries = json.loads((output / "detections.json").read_text())
    assert [entry["image"] for entry in entries] == [str(good)]
    assert (output / "overlays" / "good.png").is_file()
    assert not (output / "overlays" / "broken.png").exists()


def test_predict_all_images_bad_exits_2(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    for name in ("one.png", "two.jpg"):
        (tmp_path / name).write_text("not an image", encoding="utf-8")
    output = tmp_path / "results"

    assert predict(export_dir, output, str(tmp_path / "one.png"), str(tmp_path / "two.jpg")) == 2

    error = capsys.readouterr().err
    assert "one.png" in error and "two.jpg" in error and "none of the 2" in error
    assert not (output / "detections.json").exists()


def test_predict_min_score_filters(tmp_path: Path, export_dir: Path) -> None:
    image = save_image(tmp_path / "both.png", grey=True)  # dark scores 0.9, grey 0.4

    predict(export_dir, tmp_path / "low", "--min-score", "0.3", str(image))
    predict(export_dir, tmp_path / "high", "--min-score", "0.5", str(image))

    low = json.loads((tmp_path / "low" / "detections.json").read_text())[0]["detections"]
    high = json.loads((tmp_path / "high" / "detections.json").read_text())[0]["detections"]
    assert [detection["class"] for detection in low] == ["dark", "grey"]
    assert [detection["class"] for detection in high] == ["dark"]


def test_predict_tiled_matches_whole(tmp_path: Path, export_dir: Path) -> None:
    image = save_image(tmp_path / "wide.png", dark=(40, 20, 70, 50))

    assert predict(export_dir, tmp_path / "tiled", "--tile", "64", "--overlap", "32", str(image)) == 0

    entry = json.loads((tmp_path / "tiled" / "detections.json").read_text())[0]
    assert [detection["box"] for detection in entry["detections"]] == [[40, 20, 70, 50]]


@pytest.mark.parametrize(
    "inputs, message",
    [
        (["{tmp}/nothing-*.png"], "nothing-"),
        (["{tmp}/absent.png"], "absent.png"),
        (["{tmp}/empty"], "no image files"),
    ],
)
def test_predict_refuses_inputs_that_name_no_image(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture, inputs: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    arguments = [item.format(tmp=tmp_path) for item in inputs]
    assert predict(export_dir, tmp_path / "results", *arguments) == 2
    assert message in capsys.readouterr().err


def test_predict_refuses_overlap_not_below_tile(tmp_path: Path, export_dir: Path) -> None:
    from cervical_tf.cli.predict import run

    parser = cli.build_parser()
    arguments = parser.parse_args(
        [
            "predict",
            "--model",
            str(export_dir),
            "--output",
            str(tmp_path),
            "--tile",
            "64",
            "--overlap",
            "64",
            "x",
        ]
    )
    with pytest.raises(DataError, match="--overlap"):
        run(arguments)


def test_predict_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = save_image(tmp_path / "image.png")
    assert predict(tmp_path / "no-model", tmp_path / "results", str(image)) == 2
    assert "no-model" in capsys.readouterr().err


def convert_fields(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Three fields in two slide folders, converted (test split) with ids that are not the model's:
    convert numbers images by sorted name and its label map says dark 1, grey 2 (the model: 2, 1)."""
    from tfrecords_gen import writer
    from tfrecords_gen.records import Box, ImageRecord

    dark, grey = (20, 30, 60, 50), Box("grey", 80, 60, 110, 80)
    fields = {"slide1/a.png": (dark, True), "slide1/b.png": (None, True), "slide2/a.png": (dark, False)}
    records, paths = [], []
    for name, (dark_box, has_grey) in fields.items():
        path = save_image(tmp_path / "fields" / name, dark=dark_box, grey=has_grey)
        boxes = ((Box("dark", *dark_box),) if dark_box else ()) + ((grey,) if has_grey else ())
        records.append(ImageRecord(path, name, 120, 90, name, boxes))
        paths.append(path)
    assignment = {record.name: "test" for record in records}
    writer.write_dataset(
        tmp_path / "out", records, assignment, {"dark": 1, "grey": 2}, 0, workers=1, progress=False
    )
    return tmp_path / "out", paths


@pytest.mark.parametrize("gt", ["folder", "json"])
def test_coco_results_score_against_converts_ground_truth(tmp_path: Path, export_dir: Path, gt: str) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, paths = convert_fields(tmp_path)
    coco_gt = out if gt == "folder" else out / "test_coco.json"
    arguments = ["--min-score", "0", "--coco-gt", str(coco_gt), *map(str, reversed(paths))]
    assert predict(export_dir, tmp_path / "results", *arguments) == 0

    truth = COCO(str(out / "test_coco.json"))
    results = json.loads((tmp_path / "results" / "coco_results.json").read_text())
    ids = {image["file_name"]: image["id"] for image in truth.dataset["images"]}
    assert {(result["image_id"], result["category_id"]) for result in results} == {
        (ids["slide1/a.png"], 1),
        (ids["slide1/a.png"], 2),
        (ids["slide1/b.png"], 2),
        (ids["slide2/a.png"], 1),
    }
    evaluation = COCOeval(truth, truth.loadRes(str(tmp_path / "results" / "coco_results.json")), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP: every box found exactly, nothing else
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP50


def test_coco_gt_refuses_an_image_it_does_not_list(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out, paths = convert_fields(tmp_path)
    stranger = save_image(tmp_path / "fields" / "slide3" / "a.png")
    arguments = ["--coco-gt", str(out), str(paths[0]), str(stranger)]
    assert predict(export_dir, tmp_path / "results", *arguments) == 2
    error = capsys.readouterr().err
    assert str(stranger) in error and "file_name" in error
    assert not (tmp_path / "results" / "coco_results.json").exists()


def test_coco_gt_refuses_an_image_of_another_size_than_the_converted_one(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out, _ = convert_fields(tmp_path)
    other = tmp_path / "elsewhere" / "slide1" / "a.png"
    other.parent.mkdir(parents=True)
    Image.new("RGB", (60, 45), "white").save(other)
    assert predict(export_dir, tmp_path / "results", "--coco-gt", str(out), str(other)) == 2
    error = capsys.readouterr().err
    assert f"{other}: 60x45 px, but 'slide1/a.png'" in error and "120x90" in error


def test_coco_results_without_coco_gt_number_images_in_argument_order(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    _, paths = convert_fields(tmp_path)
    assert predict(export_dir, tmp_path / "results", "--min-score", "0", str(paths[2]), str(paths[0])) == 0
    results = json.loads((tmp_path / "results" / "coco_results.json").read_text())
    assert [(result["image_id"], result["category_id"]) for result in results] == [(1, 2), (2, 2), (2, 1)]
    assert "image ids 1..2 in argument order" in capsys.readouterr().out


@pytest.fixture(scope="module")
def carded_exports(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fake export with a model card: trained on the synthetic sample ("all") or real data ("none")."""
    return {
        kind: add_model_card(shutil.copytree(export_dir, tmp_path_factory.mktemp("carded") / kind), kind)
        for kind in ("all", "none")
    }


def test_predict_outputs_say_a_synthetic_model_never_saw_a_real_cell(
    tmp_path: Path, carded_exports: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    image = save_image(tmp_path / "field.png")
    assert predict(carded_exports["all"], tmp_path / "results", str(image)) == 0

    printed = capsys.readouterr()
    assert printed.out.startswith(f"model: {SYNTHETIC_WARNING.upper()}. resnet-18 + fpn at 512x512")
    assert f"warning: the model was {SYNTHETIC_WARNING}" in printed.err.splitlines()[-1]
    results = tmp_path / "results"
    [entry] = json.loads((results / "detections.json").read_text())
    assert entry["model_warning"] == SYNTHETIC_WARNING
    geojson = json.loads((results / "detections.geojson").read_text())
    assert geojson["model_card"]["warning"] == SYNTHETIC_WARNING
    card = json.loads((results / MODEL_CARD).read_text())
    assert card["training_data"]["synthetic_sample"] == "all" and card["warning"] == SYNTHETIC_WARNING
    with Image.open(results / "overlays" / "field.png") as overlay:
        assert overlay.size == (120, 90)
        assert "synthetic sample" in overlay.text["Description"]
        bottom_row = np.asarray(overlay.convert("RGB"))[-1]
    assert (bottom_row == WARNING_RED).all()  # the red strip across the bottom


def test_predict_outputs_carry_a_real_data_model_card_without_warning(
    tmp_path: Path, carded_exports: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    image = save_image(tmp_path / "field.png")
    assert predict(carded_exports["none"], tmp_path / "results", str(image)) == 0

    printed = capsys.readouterr()
    summary = "resnet-18 + fpn at 512x512 (recipe.yaml); 300 steps on /data/cric: 8 train images, 40 boxes"
    assert printed.out.startswith(f"model: {summary}, 2 classes (real images); validation AP 0.250, AP50")
    assert "warning" not in printed.err
    results = tmp_path / "results"
    [entry] = json.loads((results / "detections.json").read_text())
    assert "model_warning" not in entry
    card = json.loads((results / MODEL_CARD).read_text())
    assert card["warning"] is None and card["training_data"]["folder"] == "/data/cric"
    assert json.loads((results / "detections.geojson").read_text())["model_card"] == card
    with Image.open(results / "overlays" / "field.png") as overlay:
        assert summary in overlay.text["Description"]
        assert (np.asarray(overlay.convert("RGB"))[-1] == 255).all()  # white field, no strip


def test_predict_with_an_export_without_card_says_its_provenance_is_unknown(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert predict(export_dir, tmp_path / "results", str(save_image(tmp_path / "field.png"))) == 0
    assert capsys.readouterr().out.startswith("model: unknown provenance: no model_card.json in")
    card = json.loads((tmp_path / "results" / MODEL_CARD).read_text())
    assert card["provenance"] == "unknown" and card["warning"] is None


def test_predict_refuses_a_damaged_model_card(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    damaged = shutil.copytree(export_dir, tmp_path / "export")
    (damaged / MODEL_CARD).write_text("[1, 2]", encoding="utf-8")
    assert predict(damaged, tmp_path / "results", str(save_image(tmp_path / "field.png"))) == 2
    assert f"{damaged / MODEL_CARD}: not a model card" in capsys.readouterr().err
