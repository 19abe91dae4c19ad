"""The config an export builds its model from: the one training wrote, MODEL_DIR/params.yaml.

Rebuilding the config from flags could silently export another model than the one trained (a
YAML edited since, a forgotten --params_override), so:

- MODEL_DIR/params.yaml (written by `cervical-tf train`) is the config. --pipeline_config_path
  and --params_override are optional; when given, they are resolved as in training and compared
  with it, and a `task.model` field that differs is an error listing every difference.
- `task.model.detection_generator.*` is post-processing (score threshold, NMS, max detections),
  not weights: it may change at export, and the change is reported.
- Fields outside `task.model` (data paths, trainer, runtime) do not shape the model: the export
  keeps params.yaml's and ignores flags that change them.
- A model dir without params.yaml (trained by another tool) is exported from
  --pipeline_config_path (+ --params_override), with a note; without it, that is an error.
- num_classes must equal the label map's largest id + 1 (official.vision counts the background).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cervical_tf.errors import DataError
from cervical_tf.training.config import ConfigRequest, class_count_override, load_experiment
from tfrecords_gen.label_map import read_label_map

MODEL_FIELDS = "task.model"
POST_PROCESSING = "task.model.detection_generator"
_ABSENT = "(absent)"


@dataclass(frozen=True)
class ExportConfigRequest:
    """The export flags that bear on the config; None means the flag was not given."""

    trained_checkpoint_dir: Path
    label_map_path: Path
    pipeline_config_path: Path | None = None
    params_override: str | None = None


@dataclass(frozen=True)
class ExportConfig:
    """The locked ExperimentConfig to export, and what the user should be told about it."""

    params: object
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Difference:
    name: str  # dotted, e.g. task.model.input_size
    trained: object
    requested: object

    def __str__(self) -> str:
        return f"{self.name}: trained {self.trained}, requested {self.requested}"


def model_dir_of(trained_checkpoint_dir: Path) -> Path:
    """The training --model_dir: the folder itself, or the folder of a checkpoint prefix (ckpt-4)."""
    is_prefix = trained_checkpoint_dir.with_name(f"{trained_checkpoint_dir.name}.index").is_file()
    return trained_checkpoint_dir.parent if is_prefix else trained_checkpoint_dir


def export_config(request: ExportConfigRequest) -> ExportConfig:
    """The config to export (see the module docstring); raises DataError before anything is written."""
    label_map = read_label_map(request.label_map_path)
    params_yaml = model_dir_of(request.trained_checkpoint_dir) / "params.yaml"
    if not params_yaml.is_file():
        return _from_flags_alone(request, label_map, params_yaml)
    return _from_params_yaml(request, label_map, params_yaml)


def _from_params_yaml(
    request: ExportConfigRequest, label_map: dict[str, int], params_yaml: Path
) -> ExportConfig:
    trained = _load_params_yaml(params_yaml)
    _check_class_count(trained, label_map, request.label_map_path, params_yaml)
    if request.pipeline_config_path is None and request.params_override is None:
        return ExportConfig(trained, ())
    if request.pipeline_config_path is not None:
        requested = load_experiment(
            ConfigRequest(request.pipeline_config_path, params_override=request.params_override),
            extra=class_count_override(label_map),
        )
    else:
        requested = load_experiment(ConfigRequest(params_yaml, params_override=request.params_override))
    changes = _differences(trained.task.model.as_dict(), requested.task.model.as_dict(), MODEL_FIELDS)
    refused = [change for change in changes if not change.name.startswith(f"{POST_PROCESSING}.")]
    if refused:
        raise DataError(_refusal(params_yaml, request, refused))
    if not changes:
        return ExportConfig(trained, ())
    post_processing = requested.task.model.detection_generator.as_dict()
    params = _load_params_yaml(params_yaml, {"task": {"model": {"detection_generator": post_processing}}})
    note = "post-processing changed at export: " + "; ".join(
        f"{change.name} {change.trained} -> {change.requested}" for change in changes
    )
    return ExportConfig(params, (note,))


def _from_flags_alone(
    request: ExportConfigRequest, label_map: dict[str, int], params_yaml: Path
) -> ExportConfig:
    if request.pipeline_config_path is None:
        raise DataError(
            f"{params_yaml}: not found; `cervical-tf train` writes it. For a model trained elsewhere, "
            "pass --pipeline_config_path (and --params_override) with the config it was trained with"
        )
    params = load_experiment(
        ConfigRequest(request.pipeline_config_path, params_override=request.params_override),
        extra=class_count_override(label_map),
    )
    _check_class_count(params, label_map, request.label_map_path, request.pipeline_config_path)
    note = (
        f"{params_yaml.parent} has no params.yaml (not written by `cervical-tf train`): the model is built "
        f"from --pipeline_config_path {request.pipeline_config_path}"
        + (" and --params_override" if request.params_override else "")
        + "; it must be the config the checkpoint was trained with"
    )
    return ExportConfig(params, (note,))


def _load_params_yaml(params_yaml: Path, extra: dict | None = None):
    try:
        return load_experiment(ConfigRequest(params_yaml), extra=extra)
    except DataError as error:
        raise DataError(
            f"{params_yaml}: not a config `cervical-tf train` can have written: {error}"
        ) from error


def _differences(trained: dict, requested: dict, prefix: str) -> list[Difference]:
    """Every dotted field whose value differs between two `as_dict()` trees (missing on one side too)."""
    flat_trained, flat_requested = dict(_flatten(trained, prefix)), dict(_flatten(requested, prefix))
    return [
        Difference(name, flat_trained.get(name, _ABSENT), flat_requested.get(name, _ABSENT))
        for name in sorted(flat_trained.keys() | flat_requested.keys())
        if flat_trained.get(name, _ABSENT) != flat_requested.get(name, _ABSENT)
    ]


def _flatten(tree: dict, prefix: str) -> Iterator[tuple[str, object]]:
    for key, value in tree.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name)
        else:
            yield name, list(value) if isinstance(value, tuple) else value


def _refusal(params_yaml: Path, request: ExportConfigRequest, refused: list[Difference]) -> str:
    flags = " and ".join(
        flag
        for flag, value in (
            ("--pipeline_config_path", request.pipeline_config_path),
            ("--params_override", request.params_override),
        )
        if value is not None
    )
    listing = "\n".join(f"  {change}" for change in refused)
    return (
        f"{params_yaml}: {flags} would export another model than the one trained "
        f"({len(refused)} field(s) of {MODEL_FIELDS} differ):\n{listing}\n"
        f"Drop {flags} to export the model as trained (params.yaml is its config), or pass the "
        f"config and override training used. Only {POST_PROCESSING}.* (post-processing: score "
        "threshold, NMS, max detections) may change at export."
    )


def _check_class_count(params, label_map: dict[str, int], label_map_path: Path, config: Path) -> None:
    """The label map names the model's outputs: a count that differs would misname every class."""
    expected = class_count_override(label_map)["task"]["model"]["num_classes"]
    if params.task.model.num_classes != expected:
        raise DataError(
            f"{config}: num_classes {params.task.model.num_classes}, but {label_map_path} has "
            f"{len(label_map)} classes (ids up to {expected - 1}, so num_classes {expected}): pass --data "
            "with the folder the model was trained on"
        )
