"""One decoder everywhere: an EXIF-rotated JPEG and a 16-bit grey PNG, annotated in the frame they
are displayed in, give the same pixels and the same boxes through convert (what official.vision
trains on), predict, serve and evaluate (on the TFRecords and on the COCO JSON).

The fake export finds the extent of the dark pixels (class 'dark') and of the grey ones ('grey'),
so a box it returns shows where the pixels a path decoded are dark.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tensorflow as tf
from fake_export import write_fake_export
from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder
from oriented_images import save_oriented, white_with_dark_block
from PIL import Image

from cervical_tf.cli import main
from cervical_tf.evaluation.ground_truth import open_ground_truth
from cervical_tf.images import load_image
from cervical_tf.serve.limits import ServeLimits

# Displayed 40 wide and 64 high, stored 64 wide and 40 high (EXIF orientation 6): the dark block
# lies below the stored height, so only the displayed frame holds it.
ROTATED_DARK = (8, 40, 32, 56)
# 48 wide and 32 high, 16 bits: black, mid grey (90 * 257, 90 in 8 bits) and white (65535).
GREY16_DARK, GREY16_GREY = (8, 8, 24, 16), (32, 16, 40, 24)
EXPECTED_BOXES = {
    "rotated.jpg": {"dark": list(ROTATED_DARK)},
    "grey16.png": {"dark": list(GREY16_DARK), "grey": list(GREY16_GREY)},
}
SIZES = {"rotated.jpg": (40, 64), "grey16.png": (48, 32)}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the two images, annotations.csv (displayed frame) and a manifest putting both
    into the test split."""
    folder = tmp_path_factory.mktemp("data")
    displayed = white_with_dark_block(64, 40, ROTATED_DARK)
    save_oriented(folder / "rotated.jpg", displayed, 6, quality=100, subsampling=0)
    deep = np.full((32, 48), 65535, dtype=np.uint16)
    deep[8:16, 8:24] = 0
    deep[16:24, 32:40] = 90 * 257
    Image.fromarray(deep).save(folder / "grey16.png")
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for name, boxes in EXPECTED_BOXES.items():
        width, height = SIZES[name]
        rows += [f"{name},{width},{height},{label},{','.join(map(str, box))}" for label, box in boxes.items()]
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    manifest = ["image,group,split", *(f"{name},{name},test" for name in EXPECTED_BOXES)]
    (folder / "splits.csv").write_text("\n".join(manifest) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def converted(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "out"
    arguments = ["--format", "csv", "--input", images / "annotations.csv", "--output", out]
    status = main(["convert", *map(str, arguments), "--splits", str(images / "splits.csv"), "--workers", "1"])
    assert status == 0
    return out


def boxes_by_class(detections: list[dict]) -> dict[str, list[float]]:
    """{class: box} of one image's detections (the fake export finds at most one box per class)."""
    return {detection["class"]: detection["box"] for detection in detections}


def test_convert_stores_the_decoders_pixels_and_displayed_boxes(images: Path, converted: Path) -> None:
    decoder = TfExampleDecoder()
    seen = set()
    for serialized in tf.data.TFRecordDataset(sorted(map(str, converted.glob("test-*.tfrecord")))):
        decoded = decoder.decode(serialized)
        features = tf.train.Example.FromString(serialized.numpy()).features.feature
        name = features["image/filename"].bytes_list.value[0].decode()  # the decoder drops it
        seen.add(name)
        pixels = decoded["image"].numpy()
        np.testing.assert_array_equal(pixels, load_image(images / name))
        width, height = SIZES[name]
        assert (int(decoded["width"]), int(decoded["height"])) == (width, height)
        boxes = decoded["groundtruth_boxes"].numpy() * [height, width, height, width]
        expected = [
            [y_min, x_min, y_max, x_max] for x_min, y_min, x_max, y_max in EXPECTED_BOXES[name].values()
        ]
        np.testing.assert_allclose(boxes, expected, atol=1e-3)
    assert seen == set(EXPECTED_BOXES)
    coco = json.loads((converted / "test_coco.json").read_text())
    assert {image["file_name"]: (image["width"], image["height"]) for image in coco["images"]} == SIZES


def test_ground_truth_pixels_are_the_decoders_from_tfrecords_and_coco_json(
    images: Path, converted: Path
) -> None:
    from_records = open_ground_truth([str(converted / "test-*.tfrecord")])
    from_json = open_ground_truth([str(converted / "test_coco.json")], images_dir=images)
    for source in (from_records, from_json):
        loaded = {truth.name: (truth, pixels) for truth, pixels in source.images()}
        assert set(loaded) == set(EXPECTED_BOXES)
        for name, (truth, pixels) in loaded.items():
            np.testing.assert_array_equal(pixels, load_image(images / name))
            assert (truth.width, truth.height) == SIZES[name]


def test_predict_finds_the_annotated_boxes(images: Path, export_dir: Path, tmp_path: Path) -> None:
    paths = [str(images / name) for name in EXPECTED_BOXES]
    status = main(
        ["predict", "--model", str(export_dir), "--output", str(tmp_path), "--min-score", "0.1", *paths]
    )
    assert status == 0
    entries = json.loads((tmp_path / "detections.json").read_text())
    assert sorted(Path(entry["image"]).name for entry in entries) == sorted(EXPECTED_BOXES)
    for entry in entries:
        name = Path(entry["image"]).name
        assert (entry["width"], entry["height"]) == SIZES[name]
        assert boxes_by_class(entry["detections"]) == EXPECTED_BOXES[name]


def test_serve_finds_the_annotated_boxes(images: Path, export_dir: Path) -> None:
    from cervical_tf.serve.app import create_app

    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        app = create_app({"fake": export_dir}, ServeLimits(), None)
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit  # create_app sets it for the server's process

    async def detect_all() -> dict[str, dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            answers = {}
            for name in EXPECTED_BOXES:
                upload = {"image": (name, (images / name).read_bytes())}
                response = await http.post("/v1/detect", files=upload)
                assert response.status_code == 200, response.text
                answers[name] = response.json()
            return answers

    for name, answer in asyncio.run(detect_all()).items():
        assert (answer["width"], answer["height"]) == SIZES[name]
        assert boxes_by_class(answer["detections"]) == EXPECTED_BOXES[name]


@pytest.mark.parametrize("ground_truth", ["tfrecords", "coco_json"])
def test_evaluate_finds_every_annotated_box(
    images: Path, converted: Path, export_dir: Path, tmp_path: Path, ground_truth: str
) -> None:
    if ground_truth == "tfrecords":
        data = [str(converted / "test-*.tfrecord")]
    else:
        data = [str(converted / "test_coco.json"), "--images", str(images)]
    status = main(["evaluate", "--model", str(export_dir), "--output", str(tmp_path), "--data", *data])
    assert status == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ground_truth_boxes"] == 3
    assert (report["AP"], report["per_class"]["dark"]["AP"], report["per_class"]["grey"]["AP"]) == (
        1.0,
        1.0,
        1.0,
    )
