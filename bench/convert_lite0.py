"""Prove the EfficientNet-Lite0 conversion: PyTorch's logits against the converted TF backbone's.

Needs torch and the PyTorch model definition, which the project itself does not:
    .venv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0
    .venv/bin/python bench/convert_lite0.py [--write-golden tests/data/lite0_golden.npz]

Prints, for each fixed input, the max abs difference of the pooled features and logits and the
top-5 agreement of
  * the converted weights fed Lite0's own input, (pixel - 127) / 128: the layer mapping alone;
  * the shipped checkpoint (input scaling folded into the stem) fed official.vision's
    normalize_image: what detection training starts from.
Also checks that torch_state.py reads the same 296 tensors as torch.load, and which input
scaling the weights expect (top-1 probability on a photo under both).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from official.vision.ops.preprocess_ops import MEAN_RGB, STDDEV_RGB, normalize_image
from PIL import Image

from cervical_tf.training import pretrained

REPO = Path(__file__).resolve().parents[1]
CRIC_IMAGES = REPO.parent / "shared" / "data" / "cric8" / "images"
GOLDEN_SIZE = 64  # the CI fixture's side: a few KB, 2x2 at the head


def torch_model():
    """The PyTorch reference: efficientnet-lite-pytorch's definition with the wheel's state dict."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None: TF-style 'same' padding computed per input, so any input size works.
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(pretrained.lite0_weights_file()), image_size=None
    )
    state = torch.load(pretrained.lite0_weights_file(), map_location="cpu")
    return model.eval(), state


def torch_outputs(model, images: np.ndarray, lite_input: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, logits) of uint8 NHWC images under Lite0's scaling or ImageNet mean/std."""
    import torch

    with torch.no_grad():
        batch = torch.from_numpy(scaled_nchw(images, lite_input))
        pooled = model.extract_features(batch).mean(dim=(2, 3))
        return pooled.numpy(), model._fc(pooled).numpy()


def scaled_nchw(images: np.ndarray, lite_input: bool) -> np.ndarray:
    """uint8 NHWC images -> float32 NCHW under Lite0's scaling or official's ImageNet mean/std."""
    pixels = images.astype(np.float32)
    if lite_input:
        scaled = (pixels - pretrained.LITE_MEAN) / pretrained.LITE_STDDEV
    else:
        scaled = (pixels - np.float32(MEAN_RGB)) / np.float32(STDDEV_RGB)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


@contextlib.contextmanager
def stem_pads_with_imagenet_mean(model):
    """Inside, PyTorch's stem pads with the ImageNet mean colour instead of grey 127.

    The folded TF stem pads official.vision's normalized input with 0, the ImageNet mean, which
    is Lite0 input `shift` (not 0): conv(pad(x - shift) + shift) = conv(pad(x - shift)) + sum(W * shift).
    With this, folded TF and PyTorch must agree to float rounding: the fold itself is exact.
    """
    import torch

    shift = torch.tensor((np.asarray(MEAN_RGB) - pretrained.LITE_MEAN) / pretrained.LITE_STDDEV).float()
    stem = model._conv_stem
    constant = torch.einsum("oihw,i->o", stem.weight, shift).view(1, -1, 1, 1)
    original = stem.forward
    stem.forward = lambda x: original(x - shift.view(1, 3, 1, 1)) + constant
    try:
        yield
    finally:
        stem.forward = original


def tf_outputs(backbone, images: np.ndarray, state, lite_input: bool) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    if lite_input:
        scaled = (images.astype(np.float32) - pretrained.LITE_MEAN) / pretrained.LITE_STDDEV
    else:
        scaled = normalize_image(tf.constant(images))
    return pretrained.imagenet_logits(backbone, scaled, state)


def fixed_inputs(size: int) -> dict[str, np.ndarray]:
    """A seeded random image, and the centre square of a real CRIC field resized (when present)."""
    inputs = {"random": np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)}
    fields = sorted(CRIC_IMAGES.glob("*.png"))
    if fields:
        inputs[f"cric8 {fields[0].name}"] = square(Image.open(fields[0]), size)
    return inputs


def square(image: Image.Image, size: int) -> np.ndarray:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    crop = image.convert("RGB").crop((left, top, left + side, top + side))
    return np.asarray(crop.resize((size, size), Image.BILINEAR))[None]


def compare(name: str, reference, converted) -> None:
    (ref_pooled, ref_logits), (tf_pooled, tf_logits) = reference, converted
    top5 = len(set(np.argsort(-ref_logits[0])[:5]) & set(np.argsort(-tf_logits[0])[:5]))
    print(
        f"  {name}: features max |diff| {np.abs(ref_pooled - tf_pooled).max():.2e}, "
        f"logits max |diff| {np.abs(ref_logits - tf_logits).max():.2e} "
        f"(logits span {ref_logits.min():.1f}..{ref_logits.max():.1f}), top-5 shared {top5}/5, "
        f"top-1 {ref_logits[0].argmax()} vs {tf_logits[0].argmax()}"
    )


def input_scaling_check(model) -> None:
    """Which scaling the weights expect: the stem's batch norm kept ImageNet's statistics of the
    stem conv's output under the training scaling; on a photo, the right scaling reproduces them."""
    import matplotlib.cbook
    import torch

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        photo = square(Image.open(file), 224)
    norm = model._bn0
    for label, lite in (("(pixel - 127) / 128", True), ("ImageNet mean/std", False)):
        with torch.no_grad():
            stem = model._conv_stem(torch.from_numpy(scaled_nchw(photo, lite)))
        live = norm.running_var.numpy() > 0  # a few channels are dead: variance 0
        variance_ratio = np.median(stem.var(dim=(0, 2, 3)).numpy()[live] / norm.running_var.numpy()[live])
        logits = torch_outputs(model, photo, lite_input=lite)[1][0]
        probability = 1 / np.exp(logits - logits.max()).sum()
        print(
            f"  grace_hopper.jpg under {label}: stem output variance / BN running variance, median over "
            f"live channels {variance_ratio:.2f}; top-1 class {logits.argmax()} p={probability:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-golden", type=Path, help="write the CI fixture (64x64 CRIC crop) here")
    args = parser.parse_args()

    model, torch_state = torch_model()
    state = pretrained.lite0_state_dict()
    same = list(state) == list(torch_state) and all(
        np.array_equal(state[key], tensor.numpy()) for key, tensor in torch_state.items()
    )
    print(f"torch_state.py vs torch.load: {len(state)} tensors, identical: {same}")
    print("input scaling the weights expect (PyTorch model):")
    input_scaling_check(model)

    mapped = pretrained.build_backbone()
    pretrained.assign_lite0(mapped, state, fold_input_normalization=False)
    with tempfile.TemporaryDirectory() as cache:
        os.environ[pretrained.CACHE_ENV] = cache
        start = time.perf_counter()
        shipped = pretrained.restore_backbone(pretrained.lite0_checkpoint())
        print(f"conversion + restore: {time.perf_counter() - start:.1f} s")

    for size in (224, GOLDEN_SIZE):
        print(f"{size}x{size} inputs, PyTorch (Lite0 scaling) against:")
        for name, images in fixed_inputs(size).items():
            reference = torch_outputs(model, images)
            compare(
                f"{name}, mapped weights, Lite0 scaling", reference, tf_outputs(mapped, images, state, True)
            )
            shipped_outputs = tf_outputs(shipped, images, state, False)
            compare(f"{name}, shipped checkpoint, normalize_image", reference, shipped_outputs)
            with stem_pads_with_imagenet_mean(model):
                padded_reference = torch_outputs(model, images)
            compare(
                f"{name}, the same, PyTorch padding with the mean colour", padded_reference, shipped_outputs
            )

    if args.write_golden:
        name, images = list(fixed_inputs(GOLDEN_SIZE).items())[-1]
        features, logits = torch_outputs(model, images)
        with stem_pads_with_imagenet_mean(model):
            mean_pad_features, mean_pad_logits = torch_outputs(model, images)
        args.write_golden.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.write_golden,
            image=images,
            features=features,
            logits=logits,
            mean_pad_features=mean_pad_features,
            mean_pad_logits=mean_pad_logits,
        )
        print(f"wrote {args.write_golden} ({name}, {args.write_golden.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
