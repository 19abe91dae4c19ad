"""Export builds its model from the config training wrote (MODEL_DIR/params.yaml), not from flags.

No training here: a model dir is params.yaml (written with official's serialize_config, as
`cervical-tf train` does) plus label_map.pbtxt. Every refusal must come before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from official.core import train_utils

from cervical_tf.cli import main
from cervical_tf.errors import DataError
from cervical_tf.export.config import ExportConfigRequest, export_config
from cervical_tf.training.config import ConfigRequest, class_count_override, load_experiment
from tfrecords_gen.label_map import build_label_map, write_label_map

DEMO = Path(__file__).resolve().parents[1] / "pipeline_configs" / "faster_rcnn_lite0_fpn_512_demo.yaml"
# What "training" changed on top of the recipe: the model's input size and a data-side field.
TRAINING_OVERRIDE = json.dumps(
    {"task": {"model": {"input_size": [256, 256, 3]}, "train_data": {"global_batch_size": 1}}}
)
LABEL_MAP = build_label_map(("Dyskeratotic", "Koilocytotic", "Metaplastic", "Parabasal", "Superficial"))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A training --model_dir as `cervical-tf train` leaves it, minus the checkpoints."""
    folder = tmp_path / "model"
    trained = load_experiment(
        ConfigRequest(DEMO, params_override=TRAINING_OVERRIDE), extra=class_count_override(LABEL_MAP)
    )
    train_utils.serialize_config(trained, str(folder))
    write_label_map(folder / "label_map.pbtxt", LABEL_MAP)
    return folder


def resolve(model_dir: Path, config: Path | None = None, override: str | None = None):
    return export_config(ExportConfigRequest(model_dir, model_dir / "label_map.pbtxt", config, override))


def trained_config(model_dir: Path) -> dict:
    return load_experiment(ConfigRequest(model_dir / "params.yaml")).as_dict()


def test_export_config_is_params_yaml_when_no_flag_is_given(model_dir: Path) -> None:
    resolved = resolve(model_dir)
    assert resolved.params.task.model.input_size == [256, 256, 3]  # training's, not the recipe's 512
    assert resolved.params.as_dict() == trained_config(model_dir)
    assert resolved.notes == ()


def test_export_config_accepts_the_flags_training_used(model_dir: Path) -> None:
    """OD API scripts pass the config (and override) again; fields outside task.model may differ."""
    override = json.loads(TRAINING_OVERRIDE)
    override["trainer"] = {"train_steps": 3}
    resolved = resolve(model_dir, DEMO, json.dumps(override))
    assert resolved.params.as_dict() == trained_config(model_dir)  # params.yaml's trainer, data paths


def test_export_config_refuses_a_config_that_changes_the_model(model_dir: Path) -> None:
    with pytest.raises(DataError) as refusal:
        resolve(model_dir, DEMO)
    message = str(refusal.value)
    assert "task.model.input_size: trained [256, 256, 3], requested [512, 512, 3]" in message
    assert str(model_dir / "params.yaml") in message and "--pipeline_config_path" in message


def test_export_config_refuses_an_override_that_changes_the_model(model_dir: Path) -> None:
    override = "task.model.backbone.efficientnet.model_id=b1,task.model.num_classes=6"
    with pytest.raises(DataError) as refusal:
        resolve(model_dir, override=override)
    message = str(refusal.value)
    assert "task.model.backbone.efficientnet.model_id: trained b0, requested b1" in message
    assert "num_classes" not in message  # equal to training's: not a difference
    assert "detection_generator" in message  # says what may change at export


def test_export_config_post_processing_may_change_at_export(model_dir: Path) -> None:
    override = "task.model.detection_generator.max_num_detections=300"
    resolved = resolve(model_dir, override=override)
    assert resolved.params.task.model.detection_generator.max_num_detections == 300
    expected = trained_config(model_dir)
    expected["task"]["model"]["detection_generator"]["max_num_detections"] = 300
    assert resolved.params.as_dict() == expected
    assert resolved.notes == (
        "post-processing changed at export: task.model.detection_generator.max_num_detections 100 -> 300",
    )


def test_export_config_num_classes_must_match_the_label_map(model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_label_map.pbtxt"
    write_label_map(other, build_label_map(("a", "b", "c")))
    with pytest.raises(
        DataError,
        match=r"params\.yaml: num_classes 6, but .*other_label_map\.pbtxt has 3 classes .*num_classes 4",
    ):
        export_config(ExportConfigRequest(model_dir, other))


def test_export_config_without_params_yaml_falls_back_to_the_flags(model_dir: Path) -> None:
    (model_dir / "params.yaml").unlink()
    with pytest.raises(DataError, match=r"params\.yaml: not found.*--pipeline_config_path"):
        resolve(model_dir)
    resolved = resolve(model_dir, DEMO, TRAINING_OVERRIDE)
    assert resolved.params.task.model.input_size == [256, 256, 3]
    assert resolved.params.task.model.num_classes == 6  # from the label map
    assert "no params.yaml" in resolved.notes[0] and str(DEMO) in resolved.notes[0]


def test_export_cli_checks_the_config_before_writing_anything(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "export"
    flags = ["--trained_checkpoint_dir", str(model_dir), "--output_directory", str(out)]
    assert main(["export", *flags, "--pipeline_config_path", str(DEMO)]) == 2
    assert "task.model.input_size: trained [256, 256, 3], requested [512, 512, 3]" in capsys.readouterr().err
    assert not out.exists()
    # Without the flag the config is params.yaml's; this model dir then stops at its missing checkpoint.
    assert main(["export", *flags]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    assert not out.exists()
