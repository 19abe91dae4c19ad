"""Predictor: a fake SavedModel obeying the export contract, box mapping, tiling and class-aware NMS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fake_export import write_fake_export
from PIL import Image

from cervical_tf.boxes import non_max_suppression
from cervical_tf.errors import DataError
from cervical_tf.images import load_image
from cervical_tf.inference.predictor import Predictor
from cervical_tf.inference.tiling import RawDetections, merge_tiles, tile_starts


def white_image(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 255, dtype=np.uint8)


@pytest.fixture(scope="session")
def fake_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def predictor(fake_export: Path) -> Predictor:
    return Predictor.load(fake_export)


def test_load_reads_labels(predictor: Predictor) -> None:
    assert predictor.labels == {1: "grey", 2: "dark"}


def test_predict_maps_box_to_original_pixels(predictor: Predictor) -> None:
    image = white_image(640, 480)
    image[100:180, 300:410] = 20  # x 300..410, y 100..180
    detections = predictor.predict(image, "square.png")
    assert (detections.image, detections.width, detections.height) == ("square.png", 640, 480)
    assert detections.labels == ("dark",)
    assert detections.class_ids.tolist() == [2]
    np.testing.assert_allclose(detections.boxes_px[0], [300, 100, 410, 180], atol=1)
    assert detections.scores[0] == pytest.approx(0.9)


def test_predict_reads_only_valid_rows_and_sorts_by_score(predictor: Predictor) -> None:
    image = white_image(300, 200)
    image[10:50, 10:50] = 90  # grey, score 0.4
    image[100:150, 200:280] = 0  # dark, score 0.9
    detections = predictor.predict(image, "two.png")
    assert detections.labels == ("dark", "grey")
    assert detections.scores.tolist() == pytest.approx([0.9, 0.4])
    assert len(predictor.predict(image, "two.png", min_score=0.5)) == 1
    assert len(predictor.predict(image, "two.png", max_detections=1)) == 1
    assert len(predictor.predict(white_image(300, 200), "empty.png")) == 0


def test_predict_accepts_grey_and_rgba(predictor: Predictor) -> None:
    grey = np.full((120, 160), 255, dtype=np.uint8)
    grey[20:60, 30:90] = 0
    rgba = np.dstack([np.stack([grey] * 3, axis=-1), np.full_like(grey, 255)])
    for image in (grey, rgba):
        np.testing.assert_allclose(predictor.predict(image, "x").boxes_px[0], [30, 20, 90, 60], atol=1)


@pytest.mark.parametrize("left, top", [(200, 200), (700, 500), (130, 400), (880, 580)])
def test_tiled_square_across_tile_borders_is_one_box(predictor: Predictor, left: int, top: int) -> None:
    image = white_image(1000, 700)
    image[top : top + 120, left : left + 120] = 10
    detections = predictor.predict(image, "field.png", tile=256, overlap=64)
    assert len(detections) == 1
    np.testing.assert_allclose(detections.boxes_px[0], [left, top, left + 120, top + 120], atol=1)


def test_tiled_object_no_tile_sees_whole_stays_in_pieces(predictor: Predictor) -> None:
    image = white_image(1000, 700)
    image[20:100, 170:320] = 10  # 150 px wide > overlap 64: tile x 0..256 and 192..448 each see part
    detections = predictor.predict(image, "field.png", tile=256, overlap=64)
    pieces = sorted(np.round(detections.boxes_px).astype(int).tolist())
    assert pieces == [[170, 20, 256, 100], [192, 20, 320, 100]]


def test_tiled_distinct_squares_all_found(predictor: Predictor) -> None:
    image = white_image(1000, 700)
    corners = [(40, 40), (420, 300), (850, 560)]
    for left, top in corners:
        image[top : top + 60, left : left + 60] = 0
    detections = predictor.predict(image, "field.png", tile=256, overlap=64)
    found = sorted(tuple(np.round(box).astype(int).tolist()) for box in detections.boxes_px)
    assert found == [(left, top, left + 60, top + 60) for left, top in corners]


def test_tile_larger_than_image_equals_whole_image(predictor: Predictor) -> None:
    image = white_image(300, 200)
    image[50:90, 60:140] = 0
    whole = predictor.predict(image, "x")
    tiled = predictor.predict(image, "x", tile=512)
    np.testing.assert_array_equal(whole.boxes_px, tiled.boxes_px)


@pytest.mark.parametrize("tile, overlap", [(256, 256), (256, -1), (256, 300), (8, 0)])
def test_predict_refuses_bad_tiling(predictor: Predictor, tile: int, overlap: int) -> None:
    with pytest.raises(DataError, match="--"):
        predictor.predict(white_image(600, 600), "x", tile=tile, overlap=overlap)


def test_tile_starts_stride_and_flush_end() -> None:
    assert tile_starts(1000, 256, 64) == [0, 192, 384, 576, 744]
    assert tile_starts(700, 256, 64) == [0, 192, 384, 444]
    assert tile_starts(256, 256, 64) == [0]
    assert tile_starts(448, 256, 64) == [0, 192]


def test_nms_merges_same_class_overlaps() -> None:
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [300, 300, 350, 350]], dtype=np.float32)
    keep = non_max_suppression(boxes, np.array([0.6, 0.9, 0.5]), np.array([1, 1, 1]))
    assert keep.tolist() == [1, 2]


def test_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105]], dtype=np.float32)
    keep = non_max_suppression(boxes, np.array([0.6, 0.9]), np.array([1, 2]))
    assert keep.tolist() == [1, 0]


def test_agnostic_nms_keeps_one_label_per_cell() -> None:
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [300, 300, 350, 350]], dtype=np.float32)
    keep = non_max_suppression(boxes, np.array([0.6, 0.9, 0.5]), np.array([1, 2, 1]), agnostic=True)
    assert keep.tolist() == [1, 2]  # the class-1 twin of the class-2 cell goes; the far box stays


def test_nms_keeps_same_class_boxes_at_low_iou() -> None:
    boxes = np.array([[0, 0, 100, 100], [60, 0, 160, 100]], dtype=np.float32)  # IoU 40/160 = 0.25
    keep = non_max_suppression(boxes, np.array([0.9, 0.8]), np.array([1, 1]))
    assert keep.tolist() == [0, 1]


def test_merge_tiles_drops_cut_piece_covered_by_whole_box_of_same_class() -> None:
    raw = RawDetections(
        boxes_px=np.array(
            [[200, 200, 256, 320], [200, 200, 320, 320], [210, 210, 256, 300]], dtype=np.float32
        ),
        scores=np.array([0.95, 0.8, 0.7], dtype=np.float32),
        class_ids=np.array([2, 2, 1], dtype=np.int32),
        cut=np.array([True, False, True]),
    )
    # the cut class-2 piece goes although it scores highest; the cut class-1 box has no whole view
    assert sorted(merge_tiles(raw).tolist()) == [1, 2]
    # agnostic: the whole class-2 box also covers the cut class-1 piece, so only it is left
    assert merge_tiles(raw, agnostic=True).tolist() == [1]


def test_load_refuses_missing_parts(tmp_path: Path, fake_export: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        Predictor.load(tmp_path / "absent")
    with pytest.raises(DataError, match="saved_model"):
        Predictor.load(tmp_path)
    with pytest.raises(DataError, match="pass its parent"):
        Predictor.load(fake_export / "saved_model")
    (tmp_path / "saved_model").symlink_to(fake_export / "saved_model")
    with pytest.raises(DataError, match=r"label_map\.pbtxt"):
        Predictor.load(tmp_path)


def test_load_refuses_wrong_signature(tmp_path: Path) -> None:
    module = tf.Module()
    module.serve = tf.function(
        lambda images: {"detection_boxes": images},
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
    )
    tf.saved_model.save(module, str(tmp_path / "saved_model"), signatures={"serving_default": module.serve})
    (tmp_path / "label_map.pbtxt").write_text("item { id: 1 name: 'cell' }\n", encoding="utf-8")
    with pytest.raises(DataError, match="input_tensor"):
        Predictor.load(tmp_path)


def test_load_image_modes_and_exif(tmp_path: Path) -> None:
    grey16 = np.full((10, 20), 65535, dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png").shape == (10, 20, 3)
    assert load_image(tmp_path / "deep.png").max() == 255
    Image.new("RGBA", (20, 10), (10, 20, 30, 40)).save(tmp_path / "alpha.png")
    assert load_image(tmp_path / "alpha.png")[0, 0].tolist() == [10, 20, 30]
    rotated = Image.new("RGB", (20, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (20, 10, 3)


def test_load_image_names_bad_files(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image", encoding="utf-8")
    with pytest.raises(DataError, match=r"text\.png"):
        load_image(tmp_path / "text.png")
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:-5000])
    with pytest.raises(DataError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(DataError, match=r"absent\.png"):
        load_image(tmp_path / "absent.png")
