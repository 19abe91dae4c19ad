"""Anchor fit: official.vision's own anchors and resizing, nuclei- and cell-sized boxes, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cervical_tf.errors import DataError
from cervical_tf.training.anchors import (
    AnchorFit,
    AnchorLayout,
    best_ious,
    fit_layout,
    input_boxes,
    report_anchors,
)
from tfrecords_gen.records import Box, ImageRecord
from tfrecords_gen.stats import dataset_stats, write_stats

RECIPE = AnchorLayout(3, 6, 3.0, 1, (0.5, 1.0, 2.0))  # the CPU recipe's written anchors
INPUT = (512, 512)


def random_boxes(count: int, width: int, height: int, sides: tuple[float, float], seed: int) -> np.ndarray:
    """[count, 4] xyxy boxes inside a width x height image, sides log-uniform in `sides`, aspect 0.7-1.4."""
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(*np.log(sides), size=count))
    aspect = rng.uniform(0.7, 1.4, size=count)
    size = np.stack([side * np.sqrt(aspect), side / np.sqrt(aspect)], axis=1)
    corner = rng.uniform(0, 1, size=(count, 2)) * ([width, height] - size)
    return np.concatenate([corner, corner + size], axis=1)


# EDF-like fields: 1024x1024, nuclei 14-30 px there, so 7-15 px at the 512 px input.
NUCLEI = {(1024, 1024): random_boxes(400, 1024, 1024, (14, 30), seed=0)}
# Sample-like fields: 1024x768, cells 40-300 px there, so 20-150 px at 512.
CELLS = {(1024, 768): random_boxes(400, 1024, 768, (40, 300), seed=1)}


def test_anchors_best_iou_equals_official_vision_anchors_and_iou() -> None:
    from official.vision.ops import anchor, box_ops

    boxes = random_boxes(300, 384, 512, (3, 300), seed=2)
    for layout in (RECIPE, AnchorLayout(2, 5, 1.5, 2, (0.5, 1.0, 2.0))):
        stride = 2**layout.max_level
        padded = [math.ceil(side / stride) * stride for side in (512, 384)]  # official pads to the coarsest
        levels = anchor.Anchor(
            layout.min_level,
            layout.max_level,
            layout.num_scales,
            list(layout.aspect_ratios),
            layout.anchor_size,
            padded,
        ).multilevel_boxes
        every_anchor = np.concatenate([level.numpy().reshape(-1, 4) for level in levels.values()])
        official = box_ops.bbox_overlap(boxes[None, :, [1, 0, 3, 2]].astype(np.float32), every_anchor[None])
        np.testing.assert_allclose(
            best_ious(boxes, layout, (512, 384)), official.numpy()[0].max(axis=1), atol=1e-5
        )


@pytest.mark.parametrize("width,height", [(1376, 1020), (1024, 768), (300, 700)])
def test_anchors_scale_boxes_as_official_vision_resizes_images(width: int, height: int) -> None:
    from official.vision.ops import preprocess_ops

    _, image_info = preprocess_ops.resize_and_crop_image(
        np.zeros((height, width, 3), np.uint8), [512, 384], padded_size=[512, 384]
    )
    y_scale, x_scale = image_info.numpy()[2]
    corners = np.array([[10.0, 20.0, 110.0, 220.0]])
    expected = corners * [x_scale, y_scale, x_scale, y_scale]
    np.testing.assert_allclose(input_boxes({(width, height): corners}, (512, 384)), expected, rtol=1e-6)


def test_anchors_nuclei_need_the_fitted_finer_level() -> None:
    boxes = input_boxes(NUCLEI, INPUT)
    assert AnchorFit.measure(boxes, RECIPE, INPUT).covered < 0.1  # 24 px anchors on stride 8: 7-15 px nuclei
    fitted = fit_layout(boxes, RECIPE, INPUT)
    assert fitted.covered >= 0.9
    assert fitted.layout.min_level == 2  # stride 8 cannot place a 7-15 px box: P3 alone stays far below
    assert fitted.layout.aspect_ratios == RECIPE.aspect_ratios
    best_on_p3 = max(
        AnchorFit.measure(boxes, AnchorLayout(3, 6, size, scales, RECIPE.aspect_ratios), INPUT).covered
        for size in (1.0, 1.25, 1.5, 2.0)
        for scales in (1, 2)
    )
    assert best_on_p3 < 0.9


def test_anchors_cell_sized_boxes_keep_the_recipe_levels() -> None:
    boxes = input_boxes(CELLS, INPUT)
    assert 0.9 < AnchorFit.measure(boxes, RECIPE, INPUT).covered < 0.98  # gaps between octaves
    fit = fit_layout(boxes, RECIPE, INPUT)
    assert (fit.layout.min_level, fit.layout.max_level) == (3, 6)  # no costly finer level for cells
    assert fit.covered >= 0.98 and fit.warning() is None


def test_anchors_a_recipe_that_fits_is_kept() -> None:
    cric = {(1376, 1020): random_boxes(200, 1376, 1020, (64, 64), seed=3)}  # --box-size 64: 24 px at 512
    boxes = input_boxes(cric, INPUT)
    assert fit_layout(boxes, RECIPE, INPUT).layout == RECIPE


def test_anchors_poor_fit_warning_names_the_missed_sizes() -> None:
    cric = {(1376, 1020): random_boxes(100, 1376, 1020, (64, 64), seed=3)}  # 24 px at 512: all matched
    boxes = input_boxes(NUCLEI | cric, INPUT)
    fit = AnchorFit.measure(boxes, RECIPE, INPUT)
    sides = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))
    in_octave = (sides >= 8) & (sides < 16)
    missed = int(np.sum((fit.best_iou < 0.5) & in_octave))
    warning = fit.warning()
    assert warning is not None and f"8-16 px: {missed} of {int(np.sum(in_octave))}" in warning
    assert np.sum((sides >= 16) & (sides < 32)) >= 100 and "16-32 px" not in warning  # matched: not named
    assert "min_level" in warning and "input_size" in warning


def write_converted_stats(folder: Path, groups: dict[tuple[int, int], np.ndarray]) -> Path:
    """dataset_stats.json as convert writes it, for images with these boxes (one image per size)."""
    records = [
        ImageRecord(
            Path(f"{width}x{height}.png"),
            f"{width}x{height}.png",
            width,
            height,
            f"{width}x{height}",
            tuple(Box("nucleus", *corner) for corner in corners.tolist()),
        )
        for (width, height), corners in groups.items()
    ]
    folder.mkdir(exist_ok=True)
    write_stats(folder / "dataset_stats.json", dataset_stats({"train": records}))
    return folder


class FakeModel:
    """The fields of params.task.model that anchors read."""

    def __init__(self, layout: AnchorLayout) -> None:
        self.input_size = [*INPUT, 3]
        self.min_level, self.max_level = layout.min_level, layout.max_level
        self.anchor = type("Anchor", (), {"anchor_size": layout.anchor_size, "num_scales": layout.num_scales})
        self.anchor.aspect_ratios = list(layout.aspect_ratios)


class FakeParams:
    def __init__(self, layout: AnchorLayout) -> None:
        self.task = type("Task", (), {"model": FakeModel(layout)})


def test_anchors_report_prints_the_fit_and_keeps_it_beside_the_model(tmp_path: Path, capsys) -> None:
    data = write_converted_stats(tmp_path / "data", NUCLEI)
    report_anchors(FakeParams(RECIPE), data, tmp_path / "model")
    printed = capsys.readouterr().out
    covered = AnchorFit.measure(input_boxes(NUCLEI, INPUT), RECIPE, INPUT).covered
    assert (
        f"anchors: {covered:.1%} of 400 training boxes have an anchor with IoU >= 0.5 "
        "(levels 3-6, sizes 24-192 px, at 512x512 input)"
    ) in printed
    assert "warning: anchors fit poorly" in printed
    kept = json.loads((tmp_path / "model" / "anchors.json").read_text())
    assert kept["training_boxes"] == 400 and kept["covered"] == round(covered, 4)
    assert kept["layout"]["min_level"] == 3 and kept["layout"]["anchor"]["anchor_size"] == 3.0


def test_anchors_old_statistics_are_reported_not_fatal_for_written_anchors(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_stats.json").write_text('{"splits": {"train": {"images": 1, "boxes": 3}}}')
    report_anchors(FakeParams(RECIPE), data, tmp_path / "model")
    printed = capsys.readouterr().out
    assert "anchors: fit not measured" in printed and "run `cervical-tf convert` again" in printed
    assert not (tmp_path / "model" / "anchors.json").exists()


def test_anchors_old_statistics_cannot_be_fitted(tmp_path: Path) -> None:
    from cervical_tf.training.anchors import fitted_overrides

    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_stats.json").write_text('{"splits": {"train": {"images": 1, "boxes": 3}}}')
    with pytest.raises(DataError, match=r"dataset_stats\.json: written by an older `cervical-tf convert`"):
        fitted_overrides(FakeParams(RECIPE), data)
