"""The model card's facts from what training left behind, and how a card reads back (no training here;
test_model_pipeline exports a trained model and checks its card)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_export import fake_model_card

from cervical_tf.errors import DataError
from cervical_tf.export.model_card import (
    MODEL_CARD,
    PARTLY_SYNTHETIC_WARNING,
    SYNTHETIC_WARNING,
    ModelCard,
    write_model_card,
)
from cervical_tf.export.provenance import last_validation, training_data

SPLITS = {
    "train": {"images": 4, "boxes": 9, "negative_images": 0, "classes": {"NILM": 6, "LSIL": 3}},
    "val": {"images": 1, "boxes": 2, "negative_images": 0, "classes": {"NILM": 2}},
}


def converted_folder(tmp_path: Path, synthetic: dict | str | None) -> Path:
    """A folder with the dataset_stats.json convert writes; synthetic="absent" as before the marker."""
    stats = {"splits": SPLITS} | ({} if synthetic == "absent" else {"synthetic_sample": synthetic})
    (tmp_path / "dataset_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("synthetic", "share"),
    [
        (None, "none"),
        ({"generator": "cervical-tf sample", "images": {"train": 4, "val": 1}}, "all"),
        ({"generator": "cervical-tf sample", "images": {"train": 1, "val": 0}}, "some"),
        ("absent", "unknown"),
    ],
)
def test_training_data_counts_splits_and_says_how_much_was_drawn(
    tmp_path: Path, synthetic: dict | str | None, share: str
) -> None:
    facts = training_data(converted_folder(tmp_path, synthetic))
    assert facts["folder"] == str(tmp_path)
    assert facts["splits"]["train"] == {"images": 4, "boxes": 9, "classes": {"NILM": 6, "LSIL": 3}}
    assert facts["synthetic_sample"] == share
    assert ("note" in facts) == (share == "unknown")


def test_training_data_of_a_folder_without_stats_is_unknown_and_says_why(tmp_path: Path) -> None:
    facts = training_data(tmp_path / "moved")
    assert (facts["splits"], facts["synthetic_sample"]) == (None, "unknown")
    assert "dataset_stats.json: not readable" in facts["note"]
    assert "names no training data" in training_data(None)["note"]


def test_last_validation_is_the_last_evaluation_up_to_the_exported_step(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,AP,AP50,AP75\n100,0.1,0.2,0.0\n200,0.3,nan,0.1\n300,0.5,0.7,0.4\n")
    assert last_validation(metrics, 250) == {"step": 200, "AP": 0.3, "AP50": None}
    assert last_validation(metrics, None) == {"step": 300, "AP": 0.5, "AP50": 0.7}
    assert last_validation(metrics, 50) is None
    assert last_validation(tmp_path / "none.csv", 300) is None


def test_a_card_reads_back_with_its_summary_and_warning(tmp_path: Path) -> None:
    for kind, warning in (("all", SYNTHETIC_WARNING), ("some", PARTLY_SYNTHETIC_WARNING), ("none", None)):
        facts = fake_model_card("all")
        facts["training_data"] = facts["training_data"] | {"synthetic_sample": kind}
        write_model_card(tmp_path / MODEL_CARD, ModelCard(facts, tmp_path / MODEL_CARD))
        card = ModelCard.load(tmp_path)
        assert card.facts == facts  # summary and warning are worded when read, not taken from the file
        assert card.warning == warning
        assert card.summary.startswith(f"{warning.upper()}. " if warning else "resnet-18 + fpn at 512x512")
        assert card.as_json()["warning"] == warning
    assert "validation AP 0.250, AP50 0.500 at step 300; pixel size unknown" in card.summary


def test_an_export_without_card_has_unknown_provenance_and_a_broken_card_is_refused(tmp_path: Path) -> None:
    card = ModelCard.load(tmp_path)
    assert not card.known and card.warning is None
    assert card.as_json() == {"provenance": "unknown", "summary": card.summary, "warning": None}
    assert card.summary.startswith(f"unknown provenance: no {MODEL_CARD} in {tmp_path}")
    for damaged in ("{", '{"summary": "made up"}'):
        (tmp_path / MODEL_CARD).write_text(damaged, encoding="utf-8")
        with pytest.raises(DataError, match=MODEL_CARD):
            ModelCard.load(tmp_path)


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfrecords_gen.sample import SampleSpec, generate_sample

    folder = tmp_path_factory.mktemp("sample") / "sipakmed"
    generate_sample(folder, SampleSpec(images=5, width=256, height=256, seed=3), progress=False)
    return folder


def card_of_a_model_trained_on(data: Path, model_dir: Path) -> dict:
    """The card `export` writes for a model trained on `data`, without training: train's bookkeeping
    (label map and pixel size into MODEL_DIR), a checkpoint holding only the step, and the experiment
    pointed at `data` as `train --data` points it."""
    import tensorflow as tf
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the experiment)

    from cervical_tf.export.provenance import model_card_facts
    from cervical_tf.training.pixel_size import record_pixel_size
    from tfrecords_gen.label_map import read_label_map

    model_dir.mkdir()
    record_pixel_size(data, model_dir)  # what train does beside copying the label map
    checkpoint = tf.train.Checkpoint(global_step=tf.Variable(7, dtype=tf.int64)).save(str(model_dir / "ckpt"))
    params = exp_factory.get_exp_config("fasterrcnn_resnetfpn_coco")
    params.override({"task": {"train_data": {"input_path": str(data / "train-*.tfrecord")}}}, is_strict=True)
    return model_card_facts(params, checkpoint, model_dir, read_label_map(data / "label_map.pbtxt"), None)


def test_convert_mpp_reaches_the_model_card_and_stays_unknown_without(
    tiny_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cervical_tf.cli import main

    for mpp, name in (("0.25", "with"), (None, "without")):
        data = tmp_path / f"data-{name}"
        flags = ["--mpp", mpp] if mpp else []
        arguments = ["convert", "--format", "sipakmed", "--input", str(tiny_sample), "--output", str(data)]
        assert main([*arguments, "--val", "0", "--test", "0", "--workers", "1", *flags]) == 0
        assert json.loads((data / "dataset_stats.json").read_text())["pixel_size_um"] == (mpp and float(mpp))
        printed = capsys.readouterr().out
        assert ("pixel size: 0.25 µm per pixel (--mpp)" in printed) == (mpp is not None)

    facts = card_of_a_model_trained_on(tmp_path / "data-with", tmp_path / "model-with")
    assert facts["pixel_size_um"] == 0.25 and facts["training"]["steps"] == 7
    assert "convert --mpp" in facts["pixel_size_note"]
    write_model_card(tmp_path / MODEL_CARD, ModelCard(facts, tmp_path / MODEL_CARD))
    card = ModelCard.load(tmp_path)
    assert card.facts["pixel_size_um"] == 0.25 and "pixel size 0.25 µm" in card.summary

    facts = card_of_a_model_trained_on(tmp_path / "data-without", tmp_path / "model-without")
    assert facts["pixel_size_um"] is None and "converted without --mpp" in facts["pixel_size_note"]
    assert main([*arguments[:-1], str(tmp_path / "bad"), "--mpp", "0"]) == 2
    assert "--mpp must be a positive number" in capsys.readouterr().err


def test_a_model_dir_without_pixel_size_json_has_an_unknown_pixel_size(tmp_path: Path) -> None:
    from cervical_tf.training.pixel_size import load_pixel_size

    pixel_size_um, note = load_pixel_size(tmp_path)
    assert pixel_size_um is None and "pixel_size.json is missing" in note
