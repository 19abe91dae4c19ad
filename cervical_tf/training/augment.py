"""Cytology augmentation for training: stain (HED) jitter, brightness, contrast, blur, quarter turns.

Pap smears differ between labs and scanners in stain intensity, focus and orientation; official.vision's
parser only flips and scales. Every option here is off by default and switched on per option in a
config's `cervical_tf: {augment: {...}}` block (training/config.py), so their benefit can be measured.
They run on the decoded uint8 image inside tf.data, before official.vision's own training steps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from official.vision.dataloaders import maskrcnn_input
from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

from cervical_tf.errors import DataError

BLUR_SIGMA = (0.5, 1.5)  # pixels: a slightly defocused field, not a different magnification
_BLUR_RADIUS = math.ceil(3 * BLUR_SIGMA[1])
_LOG_ADJUST = float(np.log(1e-6))  # skimage's separate_stains/combine_stains scale and floor
OD_PER_UNIT = -math.log10(1e-6)  # 6: an rgb2hed value is the stain's optical density -log10(I) over 6


@dataclass(frozen=True)
class Augmentation:
    """What to jitter per training image; the defaults mean off.

    hed_sigma: s of Tellez et al. 2018: the optical density of each of the H, E, D stains (Ruifrok's
        -log10 units: 6 x skimage's rgb2hed, whose values are 0-0.15 on CRIC fields, so a beta of s in
        rgb2hed units would be 6x stronger) becomes alpha * OD + beta, alpha ~ U(1-s, 1+s), beta ~ U(-s, s).
    brightness: the most added to the [0, 1] intensities, delta ~ U(-b, b).
    contrast: the most the contrast factor departs from 1, factor ~ U(1-c, 1+c) (per channel mean kept).
    blur: the probability of a Gaussian blur with sigma ~ U(BLUR_SIGMA) pixels.
    rot90: a random quarter turn k ~ {0, 1, 2, 3} of the image and its boxes.
    """

    hed_sigma: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    blur: float = 0.0
    rot90: bool = False

    @property
    def enabled(self) -> bool:
        return self != Augmentation()

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# The numbers lie in [0, 1]; these below 1: alpha = 1 - s or a contrast factor 1 - c of 0 erases the image.
_BELOW_ONE = ("hed_sigma", "contrast")


def parse_augmentation(raw: object, where: str = "cervical_tf.augment") -> Augmentation:
    """The options in a config's mapping; a DataError names any unknown key or bad value."""
    if raw is None:
        return Augmentation()
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: expected a mapping such as {{rot90: true, hed_sigma: 0.02}}, got {raw!r}")
    names = [field.name for field in dataclasses.fields(Augmentation)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise DataError(f"{where}.{key}: unknown option; the options are {', '.join(names)}")
        if key == "rot90":
            if not isinstance(value, bool):
                raise DataError(f"{where}.rot90: expected true or false, got {value!r}")
        else:
            number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            below_one = key in _BELOW_ONE
            if not number or not (0 <= value < 1 or (value == 1 and not below_one)):
                interval = "[0, 1)" if below_one else "[0, 1]"
                raise DataError(f"{where}.{key}: expected a number in {interval}, got {value!r}")
            value = float(value)
        values[key] = value
    return Augmentation(**values)


def rgb_to_hed(rgb: tf.Tensor, clip: bool = True) -> tf.Tensor:
    """skimage.color.rgb2hed of float RGB in [0, 1] (channels last): same matrix, floor and clipping.

    clip=False keeps the negative concentrations skimage sets to 0: a Pap stain is not H&E, and
    on CRIC fields ~80% of pixels have one, so clipping alone moves colours by ~6 grey levels.
    """
    rgb = tf.maximum(rgb, 1e-6)
    stains = tf.einsum("...c,cd->...d", tf.math.log(rgb) / _LOG_ADJUST, tf.constant(hed_from_rgb, rgb.dtype))
    return tf.maximum(stains, 0.0) if clip else stains


def hed_to_rgb(hed: tf.Tensor) -> tf.Tensor:
    """skimage.color.hed2rgb: float RGB in [0, 1] from stain concentrations."""
    log_rgb = tf.einsum("...c,cd->...d", hed * _LOG_ADJUST, tf.constant(rgb_from_hed, hed.dtype))
    return tf.clip_by_value(tf.exp(log_rgb), 0.0, 1.0)


def restain(rgb: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """RGB with each stain's optical density OD replaced by alpha * OD + beta; alpha 1, beta 0 keep it."""
    return hed_to_rgb(rgb_to_hed(rgb, clip=False) * alpha + beta / OD_PER_UNIT)


def hed_jitter(rgb: tf.Tensor, sigma: float) -> tf.Tensor:
    """One alpha and beta per stain for the whole image (Tellez et al. 2018): a lab's staining, not noise."""
    alpha = tf.random.uniform([3], 1.0 - sigma, 1.0 + sigma)
    beta = tf.random.uniform([3], -sigma, sigma)
    return restain(rgb, alpha, beta)


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """A separable Gaussian of float [H, W, C]; edges reflected so that borders do not darken."""
    offsets = tf.range(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=image.dtype)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel /= tf.reduce_sum(kernel)
    channels = tf.shape(image)[-1]
    rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    columns = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    pad = [[0, 0], [_BLUR_RADIUS, _BLUR_RADIUS], [_BLUR_RADIUS, _BLUR_RADIUS], [0, 0]]
    padded = tf.pad(image[None], pad, mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, columns, [1, 1, 1, 1], "VALID")[0]


def jitter_colour(image: tf.Tensor, options: Augmentation) -> tf.Tensor:
    """The enabled colour options on a uint8 [H, W, 3] image; uint8 of the same shape back."""
    if not (options.hed_sigma or options.brightness or options.contrast or options.blur):
        return image
    rgb = tf.image.convert_image_dtype(image, tf.float32)  # x / 255, as skimage's img_as_float
    if options.hed_sigma:
        rgb = hed_jitter(rgb, options.hed_sigma)
    if options.brightness:
        rgb += tf.random.uniform([], -options.brightness, options.brightness)
    if options.contrast:
        rgb = tf.image.adjust_contrast(rgb, tf.random.uniform([], 1 - options.contrast, 1 + options.contrast))
    rgb = tf.clip_by_value(rgb, 0.0, 1.0)
    if options.blur:
        sigma = tf.random.uniform([], *BLUR_SIGMA)
        blur = tf.random.uniform([]) < options.blur
        rgb = tf.cond(blur, lambda: gaussian_blur(rgb, sigma), lambda: rgb)
    return tf.cast(tf.round(rgb * 255.0), tf.uint8)


def rotate90(image: tf.Tensor, boxes: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """tf.image.rot90 (k counter-clockwise quarter turns) of [H, W, C] and of normalized
    [ymin, xmin, ymax, xmax] boxes: a turn maps (y, x) to (1 - x, y)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    turned = tf.stack(
        [
            boxes,
            tf.stack([1 - xmax, ymin, 1 - xmin, ymax], axis=-1),
            tf.stack([1 - ymax, 1 - xmax, 1 - ymin, 1 - xmin], axis=-1),
            tf.stack([xmin, 1 - ymax, xmax, 1 - ymin], axis=-1),
        ]
    )
    return tf.image.rot90(image, k), tf.gather(turned, k)


def augment_example(data: dict, options: Augmentation) -> dict:
    """A decoded example (TfExampleDecoder's dict) with the enabled options applied."""
    data = dict(data)
    if options.rot90:
        k = tf.random.uniform([], 0, 4, dtype=tf.int32)
        data["image"], data["groundtruth_boxes"] = rotate90(data["image"], data["groundtruth_boxes"], k)
        if "groundtruth_instance_masks" in data:  # [N, H, W]: turned as images of one channel
            masks = data["groundtruth_instance_masks"][..., None]
            data["groundtruth_instance_masks"] = tf.image.rot90(masks, k)[..., 0]
    data["image"] = jitter_colour(data["image"], options)
    return data


class AugmentingParser(maskrcnn_input.Parser):
    """official.vision's Faster/Mask R-CNN parser; training examples are augmented first, then
    flipped, scaled, resized and matched to anchors by the parent as usual."""

    def __init__(self, *args, augmentation: Augmentation, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._augmentation = augmentation

    def _parse_train_data(self, data: dict):
        return super()._parse_train_data(augment_example(data, self._augmentation))
