"""Anchors against the data: how many training boxes the config's anchors can match, and a fit.

official.vision's region proposal network learns a box from the anchors that overlap it (positive at
IoU >= 0.7, or the box's best anchor): a box that no anchor overlaps at IoU >= 0.5 is learnt from one
poor anchor at best. Like YOLOv5's autoanchor ("best possible recall"), this module measures the
fraction of training boxes that have an anchor with IoU >= 0.5, with each box scaled as
official.vision scales its image to the input size (`resize_and_crop_image`, no jitter) and anchors
placed where official.vision's `Anchor` puts them: centres at (k + 1/2) * 2^level, sides
anchor_size * 2^level * 2^(scale / num_scales) for each aspect ratio (width / height). With
`cervical_tf: {anchor: auto}` in a config, `fitted_overrides` replaces its levels, anchor_size and
num_scales by the cheapest layout that fits the boxes of `--data`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cervical_tf.boxes import iou
from cervical_tf.errors import DataError

MATCH_IOU = 0.5
GOOD_FIT = 0.90  # below: a warning naming the missed sizes
KEEP_FIT = 0.98  # `anchor: auto` keeps the configured anchors when they fit this well (YOLOv5's threshold)
FINEST_LEVEL = 2  # stride 4: ResNet's C2, the finest level official.vision's FPN builds on
COARSEST_LEVEL = 7
ANCHOR_SIZES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)  # x stride
NUM_SCALES = (1, 2)  # anchor sides per octave


@dataclass(frozen=True)
class AnchorLayout:
    """The config fields that place anchors: task.model.min_level/max_level and task.model.anchor."""

    min_level: int
    max_level: int
    anchor_size: float
    num_scales: int
    aspect_ratios: tuple[float, ...]

    @classmethod
    def of(cls, model) -> AnchorLayout:
        """The layout of an official.vision MaskRCNN model config (params.task.model)."""
        anchor = model.anchor
        return cls(
            model.min_level,
            model.max_level,
            float(anchor.anchor_size),
            anchor.num_scales,
            tuple(float(ratio) for ratio in anchor.aspect_ratios),
        )

    def overrides(self) -> dict:
        """This layout as a config override."""
        anchor = {
            "anchor_size": self.anchor_size,
            "num_scales": self.num_scales,
            "aspect_ratios": list(self.aspect_ratios),
        }
        return {
            "task": {"model": {"min_level": self.min_level, "max_level": self.max_level, "anchor": anchor}}
        }

    def sides(self, level: int) -> np.ndarray:
        """[K, 2] anchor (width, height) on a level, in official.vision's order (scale, then ratio)."""
        return np.array(
            [
                (base * math.sqrt(ratio), base / math.sqrt(ratio))
                for base in (
                    self.anchor_size * 2**level * 2 ** (s / self.num_scales) for s in range(self.num_scales)
                )
                for ratio in self.aspect_ratios
            ]
        )

    def __str__(self) -> str:
        smallest = self.anchor_size * 2**self.min_level
        largest = self.anchor_size * 2**self.max_level * 2 ** ((self.num_scales - 1) / self.num_scales)
        return f"levels {self.min_level}-{self.max_level}, sizes {smallest:.0f}-{largest:.0f} px"


def input_boxes(groups: dict[tuple[int, int], np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """float [N, 4] box corners in the model input's pixels; groups: (width, height) -> corners.

    As `resize_and_crop_image`: the image is scaled by min(input_h / h, input_w / w), its sides
    rounded, and each axis's scale is scaled side / original side.
    """
    input_height, input_width = input_size
    scaled = [np.zeros((0, 4))]
    for (width, height), corners in groups.items():
        scale = min(input_height / height, input_width / width)
        x_scale, y_scale = round(width * scale) / width, round(height * scale) / height
        scaled.append(np.asarray(corners, dtype=np.float64) * [x_scale, y_scale, x_scale, y_scale])
    return np.concatenate(scaled)


def best_ious(boxes: np.ndarray, layout: AnchorLayout, input_size: tuple[int, int]) -> np.ndarray:
    """float [N]: each box's highest IoU with any anchor of the layout at this input size.

    For one anchor shape the nearest anchor centre is the best (overlap shrinks with the offset along
    each axis), so each level needs only the anchors around the box's own grid cell.
    """
    coarsest = 2**layout.max_level
    padded = np.array([math.ceil(side / coarsest) * coarsest for side in reversed(input_size)])  # x, y
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    best = np.zeros(len(boxes))
    for level in range(layout.min_level, layout.max_level + 1):
        stride = 2**level
        nearest = (np.clip(np.floor(centres / stride), 0, padded // stride - 1) + 0.5) * stride
        half = layout.sides(level) / 2
        anchors_at_origin = np.concatenate([-half, half], axis=1)
        best = np.maximum(best, iou(boxes - np.tile(nearest, 2), anchors_at_origin).max(axis=1))
    return best


@dataclass(frozen=True, eq=False)
class AnchorFit:
    """How well a layout's anchors fit a set of boxes (in the model input's pixels)."""

    layout: AnchorLayout
    input_size: tuple[int, int]
    boxes: np.ndarray = field(repr=False)
    best_iou: np.ndarray = field(repr=False)

    @classmethod
    def measure(cls, boxes: np.ndarray, layout: AnchorLayout, input_size: tuple[int, int]) -> AnchorFit:
        return cls(layout, input_size, boxes, best_ious(boxes, layout, input_size))

    @property
    def covered(self) -> float:
        """Fraction of boxes with an anchor at IoU >= MATCH_IOU (1.0 when there are no boxes)."""
        return float(np.mean(self.best_iou >= MATCH_IOU)) if len(self.boxes) else 1.0

    def line(self) -> str:
        """The report `cervical-tf train` prints."""
        return (
            f"anchors: {self.covered:.1%} of {len(self.boxes):,} training boxes have an anchor with "
            f"IoU >= {MATCH_IOU} ({self.layout}, at {self.input_size[1]}x{self.input_size[0]} input)"
        )

    def missed_sizes(self) -> list[tuple[int, int, int, int]]:
        """(low, high, missed, boxes) per octave of box side sqrt(w * h), in input pixels, with misses."""
        sides = np.sqrt(np.prod(self.boxes[:, 2:] - self.boxes[:, :2], axis=1))
        octaves = np.floor(np.log2(np.maximum(sides, 1))).astype(int)
        missed = self.best_iou < MATCH_IOU
        return [
            (
                2**octave,
                2 ** (octave + 1),
                int(np.sum(missed & (octaves == octave))),
                int(np.sum(octaves == octave)),
            )
            for octave in np.unique(octaves[missed]).tolist()
        ]

    def warning(self) -> str | None:
        """None for a good fit; else the box sizes that go without an anchor, and what would cover them."""
        if self.covered >= GOOD_FIT:
            return None
        missed = ", ".join(
            f"{low}-{high} px: {lost} of {total}" for low, high, lost, total in self.missed_sizes()
        )
        return (
            f"warning: anchors fit poorly: {int(np.sum(self.best_iou < MATCH_IOU)):,} training boxes have "
            f"no anchor with IoU >= {MATCH_IOU}; missed, by box side sqrt(w*h) at the input: {missed}. "
            "Boxes near or below the finest stride need a finer level (task.model.min_level, down to 2) or a "
            "larger task.model.input_size; `cervical_tf: {anchor: auto}` in the config fits levels and sizes"
        )

    def summary(self) -> dict:
        """What MODEL_DIR/anchors.json records."""
        return {
            "covered": round(self.covered, 4),
            "match_iou": MATCH_IOU,
            "training_boxes": len(self.boxes),
            "input_size": list(self.input_size),
            "layout": self.layout.overrides()["task"]["model"],
            "missed_by_side_px": [
                {"side_px": [low, high], "missed": missed, "boxes": total}
                for low, high, missed, total in self.missed_sizes()
            ],
        }


def fit_layout(boxes: np.ndarray, configured: AnchorLayout, input_size: tuple[int, int]) -> AnchorFit:
    """The configured layout when it fits (>= KEEP_FIT), else the cheapest layout that fits.

    Cost decides the order: first the configured levels (and one coarser level, which is cheap), then
    one finer level at a time down to FINEST_LEVEL, stopping at the first that reaches GOOD_FIT
    (a finer level costs much more; bench/README.md has the figures). Within those levels, the anchor
    size and scales that cover most boxes win; ties go to fewer anchors, then to the higher mean IoU.
    """
    best = AnchorFit.measure(boxes, configured, input_size)
    if best.covered >= KEEP_FIT:
        return best
    for min_level in range(configured.min_level, FINEST_LEVEL - 1, -1):
        candidates = [
            AnchorFit.measure(
                boxes, AnchorLayout(min_level, max_level, size, scales, configured.aspect_ratios), input_size
            )
            for max_level in sorted({configured.max_level, min(configured.max_level + 1, COARSEST_LEVEL)})
            for size in ANCHOR_SIZES
            for scales in NUM_SCALES
        ]
        candidate = max(candidates, key=_merit)
        if round(candidate.covered, 3) > round(best.covered, 3):
            best = candidate
        if best.covered >= GOOD_FIT:
            break
    return best


def _merit(fit: AnchorFit) -> tuple:
    layout = fit.layout
    levels = layout.max_level - layout.min_level + 1
    return (round(fit.covered, 3), -layout.num_scales, -levels, float(np.mean(fit.best_iou)))


def training_fit(params, data_dir: Path) -> AnchorFit:
    """The fit of the config's anchors to the training boxes in --data's dataset_stats.json."""
    from tfrecords_gen.stats import boxes_by_image_size, load_stats

    source = data_dir / "dataset_stats.json"
    input_size = tuple(params.task.model.input_size[:2])
    boxes = input_boxes(boxes_by_image_size(load_stats(source), "train", source), input_size)
    return AnchorFit.measure(boxes, AnchorLayout.of(params.task.model), input_size)


def fitted_overrides(params, data_dir: Path) -> dict:
    """`anchor: auto`: levels, anchor_size and num_scales fitted to --data's training boxes."""
    configured = training_fit(params, data_dir)
    return fit_layout(configured.boxes, configured.layout, configured.input_size).layout.overrides()


def report_anchors(params, data_dir: Path | None, model_dir: Path) -> None:
    """Print how well the anchors fit the training boxes (warn when poorly); keep it in anchors.json."""
    if data_dir is None:
        return
    try:
        fit = training_fit(params, data_dir)
    except DataError as error:  # statistics of an older convert: fixed anchors still train
        print(f"anchors: fit not measured: {error}")
        return
    print(fit.line())
    if fit.warning():
        print(fit.warning())
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "anchors.json").write_text(json.dumps(fit.summary(), indent=2), encoding="utf-8")
