"""The one decoder (cervical_tf.images) and every other reader of image files agree with it.

read_size (YOLO's normalized boxes), inspect_image (validation's size), encode_image (the pixels
official.vision's decoder trains on) and evaluate's COCO-JSON ground truth must all see the image
as the decoder does: as displayed, EXIF orientation applied, 16-bit grey scaled and not clipped.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from oriented_images import save_oriented, white_with_dark_block
from PIL import Image

from cervical_tf.evaluation.ground_truth import open_ground_truth
from cervical_tf.images import load_image
from tfrecords_gen.encode import encode_image
from tfrecords_gen.image_files import read_size
from tfrecords_gen.inspect_images import ImageFacts, inspect_image

# 48 wide and 32 high as displayed; orientations 5-8 store it 32 wide and 48 high.
DISPLAYED = white_with_dark_block(32, 48, (8, 8, 24, 16))
JPEG_EXACT = {"quality": 100, "subsampling": 0}


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _palette_image(color: tuple[int, int, int]) -> Image.Image:
    image = Image.new("P", (3, 2), 1)
    image.putpalette([0, 0, 0, *color])
    return image


def _exif_chunk_moved_behind_the_pixels(png: bytes) -> bytes:
    """The PNG with its eXIf chunk after the IDAT chunks, where Pillow finds it only by decoding."""
    start = png.index(b"eXIf") - 4
    end = start + 12 + struct.unpack(">I", png[start : start + 4])[0]
    rest = png[:start] + png[end:]
    image_end = rest.index(b"IEND") - 4
    return rest[:image_end] + png[start:end] + rest[image_end:]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_every_reader_sees_the_displayed_size_and_pixels(
    tmp_path: Path, orientation: int, image_format: str
) -> None:
    options = JPEG_EXACT if image_format == "JPEG" else {}
    path = save_oriented(tmp_path / f"image.{image_format.lower()}", DISPLAYED, orientation, **options)
    np.testing.assert_array_equal(load_image(path), DISPLAYED)
    assert read_size(path) == (48, 32)
    facts = inspect_image(path)
    assert (facts.width, facts.height) == (48, 32)
    stored = tf.io.decode_image(encode_image(path).data, channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(stored, DISPLAYED)
    assert isinstance(facts, ImageFacts) and facts.orientation == orientation  # size_mismatch names it


def test_png_orientation_stored_behind_the_pixels_counts_too(tmp_path: Path) -> None:
    rotated = save_oriented(tmp_path / "front.png", DISPLAYED, 6)
    path = tmp_path / "behind.png"
    path.write_bytes(_exif_chunk_moved_behind_the_pixels(rotated.read_bytes()))
    with Image.open(path) as image:
        assert "exif" not in image.info  # not seen when the header is read
    np.testing.assert_array_equal(load_image(path), DISPLAYED)
    assert read_size(path) == (48, 32)
    stored = tf.io.decode_image(encode_image(path).data, channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(stored, DISPLAYED)


def _saved(path: Path, image: Image.Image, **options: object) -> Path:
    image.save(path, **options)
    return path


IMAGE_FILES = {
    "plain.jpg": lambda path: _saved(path, Image.fromarray(_noise(24, 40)), quality=90),
    "grey.jpg": lambda path: _saved(path, Image.fromarray(_noise(24, 40)).convert("L"), quality=90),
    "cmyk.jpg": lambda path: _saved(path, Image.fromarray(_noise(24, 40)).convert("CMYK")),
    "rotated.jpg": lambda path: save_oriented(path, _noise(24, 40), 6, quality=90),
    "rotated.png": lambda path: save_oriented(path, _noise(24, 40), 8),
    "plain.png": lambda path: _saved(path, Image.fromarray(_noise(24, 40))),
    "grey16.png": lambda path: _saved(
        path, Image.fromarray(np.linspace(0, 65535, 24 * 40).astype(np.uint16).reshape(24, 40))
    ),
    "palette.png": lambda path: _saved(path, Image.fromarray(_noise(24, 40)).convert("P")),
    "alpha.png": lambda path: _saved(path, Image.fromarray(_noise(24, 40)).convert("RGBA")),
    "image.bmp": lambda path: _saved(path, Image.fromarray(_noise(24, 40))),
    "image.tif": lambda path: _saved(path, Image.fromarray(_noise(24, 40))),
    "image.webp": lambda path: _saved(path, Image.fromarray(_noise(24, 40)), lossless=True),
}


@pytest.mark.parametrize("name", IMAGE_FILES)
def test_stored_bytes_decode_in_tensorflow_to_the_decoders_pixels(tmp_path: Path, name: str) -> None:
    """tf.io.decode_image is official.vision's decoder (TfExampleDecoder): training must see what
    predict sees. It ignores EXIF, and its default JPEG IDCT differs from libjpeg's by a few levels."""
    path = IMAGE_FILES[name](tmp_path / name)
    encoded = encode_image(path)
    stored = tf.io.decode_image(encoded.data, channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(stored, load_image(path))
    with Image.open(io.BytesIO(encoded.data)) as image:
        assert image.format.lower() == encoded.format


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_unrotated_8_bit_png_passes_through_byte_for_byte(tmp_path: Path, mode: str) -> None:
    path = _saved(tmp_path / "plain.png", Image.fromarray(_noise(24, 40)).convert(mode))
    assert encode_image(path).data == path.read_bytes()


@pytest.mark.parametrize(
    ("image", "first_pixel"),
    [
        (Image.fromarray(np.full((2, 3), 65535 // 2, dtype=np.uint16)), [127, 127, 127]),
        (Image.fromarray(np.full((2, 3), 257 * 200, dtype=np.int32), mode="I"), [200, 200, 200]),
        (Image.fromarray(np.full((2, 3), 300.5, dtype=np.float32), mode="F"), [255, 255, 255]),
        (Image.new("LA", (3, 2), (90, 7)), [90, 90, 90]),
        (Image.new("RGBA", (3, 2), (10, 20, 30, 0)), [10, 20, 30]),
        (_palette_image((10, 20, 30)), [10, 20, 30]),
        (Image.new("CMYK", (3, 2), (0, 255, 255, 0)), [255, 0, 0]),
        (Image.new("1", (3, 2), 1), [255, 255, 255]),
    ],
    ids=["grey16", "int32", "float", "grey-alpha", "rgba", "palette", "cmyk", "bilevel"],
)
def test_decoder_gives_8_bit_rgb_for_every_mode(
    tmp_path: Path, image: Image.Image, first_pixel: list[int]
) -> None:
    path = _saved(tmp_path / "image.tif", image)
    pixels = load_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 3, 3)
    assert pixels[0, 0].tolist() == first_pixel
    np.testing.assert_array_equal(load_image(io.BytesIO(path.read_bytes())), pixels)


@pytest.mark.parametrize("name", ["grey16.png", "rotated.jpg"])
def test_coco_json_ground_truth_uses_the_decoder(tmp_path: Path, name: str) -> None:
    """Evaluate on a COCO JSON: 16-bit grey scaled (not clipped at 255), EXIF orientation applied."""
    path = IMAGE_FILES[name](tmp_path / name)
    height, width = load_image(path).shape[:2]
    document = {
        "images": [{"id": 1, "file_name": name, "width": width, "height": height}],
        "annotations": [],
        "categories": [{"id": 1, "name": "dark"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(document), encoding="utf-8")
    [(_, pixels)] = open_ground_truth([str(tmp_path / "gt.json")]).images()
    np.testing.assert_array_equal(pixels, load_image(path))
