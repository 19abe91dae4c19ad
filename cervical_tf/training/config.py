"""Experiment configs: official.vision's `fasterrcnn_resnetfpn_coco` + a YAML file + the user's flags.

The YAML in pipeline_configs/ is the single source of truth for the model; it runs unchanged with
`python -m official.vision.train --experiment=fasterrcnn_resnetfpn_coco --config_file=...`.
On top, `--data` points the config at a folder written by `cervical-tf convert`, so no config
needs editing for a new data set, and `--params_override` changes any field. Every override is
strict: a misspelt key is an error, not a silently ignored setting.

A config may hold one block official.vision does not know, `cervical_tf:`, which is taken out
before the rest reaches official.vision: `cervical_tf: {anchor: auto}` fits the levels and anchor
sizes to --data's training boxes (cervical_tf/training/anchors.py), unless --params_override sets
them; `fixed` keeps them as written. `cervical_tf: {augment: {rot90: true, hed_sigma: 0.02}}` switches
on training augmentations (cervical_tf/training/augment.py, all off by default); --params_override
cervical_tf.augment.NAME=VALUE changes one. The resolved experiment keeps that block when an
augmentation is on, so params.yaml records it (and official.vision alone cannot run such a file:
it could not augment alike).
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.errors import DataError
from cervical_tf.training.anchors import fitted_overrides
from cervical_tf.training.pretrained import pretrained_overrides
from cervical_tf.training.schedule import fitted_to_steps
from tfrecords_gen.label_map import read_label_map

if TYPE_CHECKING:
    from cervical_tf.training.augment import Augmentation

EXPERIMENT = "fasterrcnn_resnetfpn_coco"
PROJECT_KEY = "cervical_tf"  # the project's own settings in a config file or --params_override
ANCHOR_MODES = ("auto", "fixed")
ANCHOR_FIELDS = ("min_level", "max_level", "anchor")  # of task.model: what `anchor: auto` fits
AUGMENT_KEY = "augment"  # the training augmentations in the project's block


@dataclass(frozen=True)
class ConfigRequest:
    """What the flags say about the config; None leaves the YAML's value."""

    pipeline_config_path: Path
    data_dir: Path | None = None
    params_override: str | None = None
    init_checkpoint: str | None = None
    num_train_steps: int | None = None
    eval_timeout: int | None = None  # seconds continuous evaluation waits for a new checkpoint
    checkpoint_every_n: int | None = None
    sample_1_of_n_eval_examples: int = 1
    workers: int = 1  # processes training together (training/cluster.py)


def load_experiment(request: ConfigRequest, extra: dict | None = None):
    """The resolved, validated and locked official.vision ExperimentConfig.

    Order: the experiment's defaults, the YAML, --data, `extra` (overrides the caller derives),
    --params_override, then the single-value flags.
    """
    from official.core import exp_factory
    from official.modeling import hyperparams
    from official.vision import registry_imports  # noqa: F401  (registers the experiment)

    if not request.pipeline_config_path.is_file():
        raise DataError(f"--pipeline_config_path {request.pipeline_config_path}: no such file")
    params = exp_factory.get_exp_config(EXPERIMENT)
    _, settings = _strict_override(hyperparams, params, str(request.pipeline_config_path), "the config file")
    if request.data_dir is not None:
        params.override(data_overrides(request.data_dir), is_strict=True)
    if extra:
        params.override(extra, is_strict=True)
    overridden: dict = {}
    if request.params_override:
        overridden, override_settings = _strict_override(
            hyperparams, params, request.params_override, "--params_override"
        )
        augment = {**(settings.get(AUGMENT_KEY) or {}), **(override_settings.pop(AUGMENT_KEY, None) or {})}
        settings.update(override_settings, **({AUGMENT_KEY: augment} if augment else {}))
    if request.init_checkpoint is not None:
        params.override({"task": {"init_checkpoint": request.init_checkpoint}}, is_strict=True)
    if request.num_train_steps is not None:  # with the schedule fitted to them (training/schedule.py)
        params.override(fitted_to_steps(params, request.num_train_steps), is_strict=True)
    if request.eval_timeout is not None:
        params.override({"trainer": {"continuous_eval_timeout": request.eval_timeout}}, is_strict=True)
    if request.checkpoint_every_n is not None:
        params.override({"trainer": {"checkpoint_interval": request.checkpoint_every_n}}, is_strict=True)
    if request.workers > 1:  # every worker evaluates the whole split (see _unsharded_validation)
        params.override(_unsharded_validation(), is_strict=True)
    if request.sample_1_of_n_eval_examples > 1:
        steps = _sampled_validation_steps(params, request.sample_1_of_n_eval_examples, request.data_dir)
        params.override({"trainer": {"validation_steps": steps}}, is_strict=True)
    if settings.get("anchor") == "auto" and request.data_dir is not None and not _sets_anchors(overridden):
        params.override(fitted_overrides(params, request.data_dir), is_strict=True)  # at the final input_size
    params.override(pretrained_overrides(params.task), is_strict=True)  # pretrained:NAME -> cached path
    augmentation = _parse_augmentation(settings.get(AUGMENT_KEY))
    if augmentation.enabled:  # kept in the experiment, hence in params.yaml: the run's record
        params.override({PROJECT_KEY: {AUGMENT_KEY: augmentation.as_dict()}}, is_strict=False)
    params.validate()
    _check_loop_intervals(params)
    params.lock()
    return params


def augmentation_of(params) -> Augmentation:
    """The training augmentations load_experiment kept in the experiment; all off when it kept none."""
    block = params.as_dict().get(PROJECT_KEY) or {}
    return _parse_augmentation(block.get(AUGMENT_KEY))


def data_overrides(data_dir: Path) -> dict:
    """Config fields that point an experiment at a converted folder (shards, label map, COCO GT)."""
    label_map_path = data_dir / "label_map.pbtxt"
    if not label_map_path.is_file():
        raise DataError(
            f"--data {data_dir}: no label_map.pbtxt; expected a folder written by `cervical-tf convert`"
        )
    label_map = read_label_map(label_map_path)
    train_pattern = str(data_dir / "train-*.tfrecord")
    if not glob.glob(train_pattern):
        raise DataError(f"--data {data_dir}: no train-*.tfrecord shards")
    overrides: dict = class_count_override(label_map)
    overrides["task"]["train_data"] = {"input_path": train_pattern}
    val_pattern = str(data_dir / "val-*.tfrecord")
    if glob.glob(val_pattern):
        overrides["task"]["validation_data"] = {"input_path": val_pattern}
        overrides["task"]["annotation_file"] = str(data_dir / "val_coco.json")
    return overrides


def class_count_override(label_map: dict[str, int]) -> dict:
    """num_classes for a label map: official.vision counts the background class, ids 1..N plus 0."""
    return {"task": {"model": {"num_classes": max(label_map.values()) + 1}}}


def label_map_for(params, data_dir: Path | None) -> Path:
    """The label map that names the config's classes: --data's, else one beside the train shards."""
    candidates = [data_dir / "label_map.pbtxt"] if data_dir else []
    train_path = params.task.train_data.input_path
    if isinstance(train_path, str) and train_path:
        candidates.append(Path(train_path.split(",")[0]).parent / "label_map.pbtxt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        "no label_map.pbtxt found beside the training data; "
        "pass --data with the folder written by `cervical-tf convert`"
    )


def _unsharded_validation() -> dict:
    """Several workers: each reads the whole validation split instead of its share.

    official.vision's COCO evaluator scores the images its own worker evaluated
    (`experimental_local_results`), so with the split shared out the chief's AP would be the AP of
    its share only; unsharded, every worker evaluates every image and the chief's AP is the
    split's, as on one machine (evaluation is then no faster with more workers; training is).
    """
    return {"task": {"validation_data": {"sharding": False}}}


def _sampled_validation_steps(params, every_n: int, data_dir: Path | None) -> int:
    """validation_steps covering 1/N of the validation images, counted from --data's statistics."""
    from tfrecords_gen.stats import load_stats

    if data_dir is None:
        raise DataError("--sample_1_of_n_eval_examples needs --data to count the validation images")
    images = load_stats(data_dir)["splits"].get("val", {}).get("images", 0)
    return max(1, math.ceil(images / every_n / params.task.validation_data.global_batch_size))


def _check_loop_intervals(params) -> None:
    """Orbit runs steps_per_loop steps between summaries: say so before training starts, not after."""
    trainer = params.trainer
    if trainer.summary_interval and trainer.summary_interval % trainer.steps_per_loop:
        raise DataError(
            f"trainer.summary_interval ({trainer.summary_interval}) must be a multiple of "
            f"trainer.steps_per_loop ({trainer.steps_per_loop}); change one with --params_override"
        )


def _parse_augmentation(raw: object, prefix: str = "") -> Augmentation:
    from cervical_tf.training.augment import parse_augmentation  # deferred: it imports TensorFlow

    return parse_augmentation(raw, f"{prefix}{PROJECT_KEY}.{AUGMENT_KEY}")


def _sets_anchors(overridden: dict) -> bool:
    """Whether --params_override sets task.model.min_level, max_level or anchor: given values beat `auto`."""
    return any(name in overridden.get("task", {}).get("model", {}) for name in ANCHOR_FIELDS)


def _strict_override(hyperparams, params, source: str, what: str) -> tuple[dict, dict]:
    """Apply a YAML file, YAML/JSON text or dotted override strictly, all but its `cervical_tf:` block.

    Returns what was applied and that block's settings.
    """
    try:
        tree = hyperparams.override_params_dict(hyperparams.ParamsDict(), source, is_strict=False).as_dict()
        settings = tree.pop(PROJECT_KEY, None) or {}
        params.override(tree, is_strict=True)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{what}: {error}") from error
    valid = (
        isinstance(settings, dict)
        and set(settings) <= {"anchor", AUGMENT_KEY}
        and settings.get("anchor", "auto") in ANCHOR_MODES
    )
    if not valid:
        raise DataError(
            f"{what}: {PROJECT_KEY}: {settings!r} is not a setting; expected "
            f"{PROJECT_KEY}: {{anchor: auto}} or {{anchor: fixed}}, and/or {{{AUGMENT_KEY}: {{...}}}}"
        )
    _parse_augmentation(settings.get(AUGMENT_KEY), f"{what}: ")  # a misspelt option fails here, first
    return tree, settings
