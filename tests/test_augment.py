"""Training augmentation: skimage's HED transform in TensorFlow, quarter turns with their boxes, the
colour options, the config block and the augmented training input of CellDetectionTask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders import maskrcnn_input
from skimage.color import hed2rgb, rgb2hed
from skimage.color.colorconv import rgb_from_hed

from cervical_tf.cli import main
from cervical_tf.errors import DataError
from cervical_tf.training.augment import (
    Augmentation,
    AugmentingParser,
    hed_to_rgb,
    jitter_colour,
    parse_augmentation,
    restain,
    rgb_to_hed,
    rotate90,
)
from cervical_tf.training.config import ConfigRequest, augmentation_of, load_experiment
from tfrecords_gen.sample import SampleSpec, generate_sample

DEMO = next((Path(__file__).resolve().parents[1] / "pipeline_configs").glob("*demo*.yaml"))
EVERYTHING = Augmentation(hed_sigma=0.05, brightness=0.2, contrast=0.3, blur=1.0, rot90=True)


def assert_matches_skimage(image: np.ndarray) -> None:
    """rgb -> hed and hed -> rgb each equal skimage's on a uint8 image."""
    hed = rgb2hed(image)
    ours = rgb_to_hed(tf.image.convert_image_dtype(image, tf.float32)).numpy()
    np.testing.assert_allclose(ours, hed, atol=1e-4)
    np.testing.assert_allclose(hed_to_rgb(tf.constant(hed, tf.float32)).numpy(), hed2rgb(hed), atol=1e-4)


def test_augment_hed_matches_skimage_on_a_synthetic_image() -> None:
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    image[0, :3] = [[0, 0, 0], [255, 255, 255], [255, 0, 0]]  # the 1e-6 floor, white, a pure colour
    assert_matches_skimage(image)


def test_augment_hed_matches_skimage_on_a_real_field(shared_data: Path) -> None:
    from PIL import Image

    paths = sorted((shared_data / "cric8" / "images").glob("*.png"))
    if not paths:
        pytest.skip("no CRIC image in the shared data")
    image = np.asarray(Image.open(paths[0]).convert("RGB"))[:384, :512]
    assert_matches_skimage(image)
    # Jitter restains the unclipped concentrations: alpha 1, beta 0 give the field back, which
    # skimage's round trip does not (it sets the negative concentrations of a Pap stain to 0).
    rgb = tf.image.convert_image_dtype(image, tf.float32)
    kept = tf.cast(tf.round(restain(rgb, tf.ones(3), tf.zeros(3)) * 255), tf.uint8).numpy()
    np.testing.assert_array_equal(kept, image)
    assert np.abs(np.round(hed2rgb(rgb2hed(image)) * 255) - image).mean() > 1


def test_augment_restain_shifts_optical_density_in_ruifrok_s_units() -> None:
    white = tf.ones([1, 1, 3])
    tinted = restain(white, tf.ones(3), tf.constant([0.1, 0.0, 0.0]))  # + 0.1 OD of hematoxylin
    np.testing.assert_allclose(tinted.numpy()[0, 0], 10 ** (-0.1 * rgb_from_hed[0]), atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_augment_rot90_moves_the_box_with_the_image(k: int) -> None:
    height, width = 40, 60
    image = np.zeros((height, width, 1), np.uint8)
    image[0:10, 0:12] = 255  # a box at the top left: rows 0-9, columns 0-11
    box = [0.0, 0.0, 10 / height, 12 / width]
    turned, boxes = rotate90(tf.constant(image), tf.constant([box]), tf.constant(k))
    turned = turned.numpy()[..., 0]
    assert turned.shape == ((width, height) if k % 2 else (height, width))
    rows, columns = np.nonzero(turned)
    where = [
        rows.min() / turned.shape[0],
        columns.min() / turned.shape[1],
        (rows.max() + 1) / turned.shape[0],
        (columns.max() + 1) / turned.shape[1],
    ]
    np.testing.assert_allclose(boxes.numpy()[0], where, atol=1e-6)
    expected = {  # counter-clockwise: the top-left corner goes to the bottom left, bottom right, top right
        1: [1 - 12 / width, 0.0, 1.0, 10 / height],
        2: [1 - 10 / height, 1 - 12 / width, 1.0, 1.0],
        3: [0.0, 1 - 10 / height, 12 / width, 1.0],
    }
    np.testing.assert_allclose(boxes.numpy()[0], expected[k], atol=1e-6)


def test_augment_colour_options_keep_uint8_and_shape() -> None:
    tf.random.set_seed(3)
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    assert jitter_colour(image, Augmentation(rot90=True)) is image  # colour off: untouched
    for options in [
        Augmentation(hed_sigma=0.3),
        Augmentation(brightness=1.0),
        Augmentation(contrast=0.9),
        Augmentation(blur=1.0),
        EVERYTHING,
    ]:
        changed = jitter_colour(image, options)
        assert changed.dtype == tf.uint8 and changed.shape == image.shape, options
        assert not np.array_equal(changed.numpy(), image.numpy()), options


def decoded_example() -> dict:
    """What TfExampleDecoder yields for a 3-box 96x128 field."""
    image = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return {
        "image": tf.constant(image),
        "groundtruth_boxes": tf.constant([[0.1, 0.1, 0.4, 0.3], [0.5, 0.6, 0.9, 0.95], [0.2, 0.5, 0.3, 0.7]]),
        "groundtruth_classes": tf.constant([1, 2, 1], tf.int64),
        "groundtruth_is_crowd": tf.constant([False, False, False]),
        "groundtruth_area": tf.constant([1.0, 1.0, 1.0]),
        "source_id": tf.constant("7"),
        "height": tf.constant(96),
        "width": tf.constant(128),
    }


PARSER = {
    "output_size": [128, 128],
    "min_level": 3,
    "max_level": 5,
    "num_scales": 1,
    "aspect_ratios": [0.5, 1.0, 2.0],
    "anchor_size": 3.0,
    "aug_rand_hflip": True,
    "aug_rand_vflip": True,
    "aug_scale_min": 0.8,
    "aug_scale_max": 1.2,
}


def test_augment_parser_with_everything_off_is_official_vision_s() -> None:
    outputs = []
    for parser in (maskrcnn_input.Parser(**PARSER), AugmentingParser(**PARSER, augmentation=Augmentation())):
        tf.random.set_seed(5)  # the same flips, scale and RPN sampling for both
        outputs.append(tf.nest.flatten(parser.parse_fn(is_training=True)(decoded_example())))
    assert len(outputs[0]) == len(outputs[1])
    for official, ours in zip(*outputs, strict=True):
        np.testing.assert_array_equal(ours.numpy(), official.numpy())


def test_augment_parser_turns_the_image_and_keeps_every_box() -> None:
    tf.random.set_seed(0)
    parser = AugmentingParser(**{**PARSER, "aug_scale_max": 1.0}, augmentation=EVERYTHING)  # no crop
    for _ in range(4):
        image, labels = parser.parse_fn(is_training=True)(decoded_example())
        assert image.shape == (128, 128, 3)
        assert int(tf.reduce_sum(tf.cast(labels["gt_classes"] > 0, tf.int32))) == 3


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"hed_sigmaa": 0.1}, r"cervical_tf\.augment\.hed_sigmaa: unknown option"),
        ({"rot90": "yes"}, r"cervical_tf\.augment\.rot90: expected true or false"),
        ({"contrast": 1.0}, r"cervical_tf\.augment\.contrast: expected a number in \[0, 1\)"),
        ({"blur": -0.1}, r"cervical_tf\.augment\.blur: expected a number in \[0, 1\]"),
        ({"brightness": True}, r"cervical_tf\.augment\.brightness: expected a number"),
        ([0.1], r"cervical_tf\.augment: expected a mapping"),
    ],
)
def test_augment_bad_option_is_a_data_error_naming_it(block: object, named: str) -> None:
    with pytest.raises(DataError, match=named):
        parse_augmentation(block)


def test_augment_config_block_is_checked_first_and_recorded_in_params_yaml(tmp_path: Path) -> None:
    from official.core import train_utils

    config = tmp_path / "config.yaml"
    config.write_text(DEMO.read_text() + "\ncervical_tf:\n  augment:\n    rot90: true\n    hue: 0.1\n")
    with pytest.raises(DataError, match=r"the config file: cervical_tf\.augment\.hue: unknown option"):
        load_experiment(ConfigRequest(config, init_checkpoint=""))
    config.write_text(DEMO.read_text() + "\ncervical_tf:\n  augment:\n    rot90: true\n    blur: 0.5\n")
    params = load_experiment(
        ConfigRequest(config, init_checkpoint="", params_override="cervical_tf.augment.hed_sigma=0.02")
    )
    assert augmentation_of(params) == Augmentation(hed_sigma=0.02, blur=0.5, rot90=True)  # merged
    train_utils.serialize_config(params, str(tmp_path / "model"))
    again = load_experiment(ConfigRequest(tmp_path / "model" / "params.yaml"))
    assert augmentation_of(again) == augmentation_of(params)
    plain = load_experiment(ConfigRequest(DEMO, init_checkpoint=""))
    assert not augmentation_of(plain).enabled and "cervical_tf" not in plain.as_dict()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("augment")
    generate_sample(root / "sample", SampleSpec(images=10, width=320, height=256, seed=2), progress=False)
    sample, data = str(root / "sample"), str(root / "data")
    assert main(["convert", "--format", "sipakmed", "--input", sample, "--output", data, "--val", "0.2"]) == 0
    return root / "data"


def test_augment_task_builds_augmented_training_input(converted: Path, monkeypatch) -> None:
    from cervical_tf.training import augment
    from cervical_tf.training.task import CellDetectionTask

    traced = []  # the options tf.data traced augment_example with
    original = augment.augment_example
    monkeypatch.setattr(augment, "augment_example", lambda data, o: traced.append(o) or original(data, o))

    override = {
        "task": {"model": {"input_size": [256, 256, 3]}, "train_data": {"global_batch_size": 2}},
        "cervical_tf": {"augment": EVERYTHING.as_dict()},
    }
    params = load_experiment(
        ConfigRequest(DEMO, data_dir=converted, init_checkpoint="", params_override=json.dumps(override))
    )
    elements = {}
    for options in (Augmentation(), augmentation_of(params)):
        task = CellDetectionTask(params.task, augmentation=options)
        images, labels = next(iter(task.build_inputs(params.task.train_data)))
        elements[options.enabled] = images, labels
    (images, labels), (plain_images, plain_labels) = elements[True], elements[False]
    assert images.shape == plain_images.shape == (2, 256, 256, 3)
    assert tf.nest.map_structure(lambda t: t.shape, labels) == tf.nest.map_structure(
        lambda t: t.shape, plain_labels
    )
    assert int(tf.reduce_sum(tf.cast(labels["gt_classes"] > 0, tf.int32))) > 0
    assert traced and set(traced) == {EVERYTHING}  # the plain task's input never augments
