"""The TFDS builder yields what `convert --format sipakmed` writes for the same folder and split settings.

Compared example by example with convert's TFRecords (not with the builder's own reader): the same
images per split, the same pixels, the same normalized boxes, and the same label ids, which are
the ids of convert's label_map.pbtxt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cervical_tf.cli import main
from tfrecords_gen.label_map import read_label_map
from tfrecords_gen.sample import SampleSpec, generate_sample
from tfrecords_gen.tfds_sipakmed import SPLIT_SEED, TEST_FRACTION, TFDS_SPLITS, VAL_FRACTION, Sipakmed

OD_API_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    **{
        f"image/object/bbox/{key}": tf.io.VarLenFeature(tf.float32)
        for key in ("ymin", "xmin", "ymax", "xmax")
    },
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


def converted_examples(folder: Path, split: str) -> dict[str, dict[str, np.ndarray]]:
    """Image name -> pixels, [ymin, xmin, ymax, xmax] boxes and label ids from convert's shards."""
    examples = {}
    for serialized in tf.data.TFRecordDataset(sorted(map(str, folder.glob(f"{split}-*.tfrecord")))):
        parsed = tf.io.parse_single_example(serialized, OD_API_FEATURES)
        corners = [
            tf.sparse.to_dense(parsed[f"image/object/bbox/{key}"]) for key in ("ymin", "xmin", "ymax", "xmax")
        ]
        examples[parsed["image/filename"].numpy().decode()] = {
            "image": tf.io.decode_image(parsed["image/encoded"], channels=3).numpy(),
            "bbox": tf.stack(corners, axis=-1).numpy(),
            "label": tf.sparse.to_dense(parsed["image/object/class/label"]).numpy(),
        }
    return examples


def test_tfds_sipakmed_yields_what_convert_writes(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    generate_sample(sample, SampleSpec(images=10, width=320, height=256, seed=5), progress=False)
    converted = tmp_path / "converted"
    split_flags = ["--val", str(VAL_FRACTION), "--test", str(TEST_FRACTION), "--seed", str(SPLIT_SEED)]
    arguments = ["convert", "--format", "sipakmed", "--input", str(sample), "--output", str(converted)]
    assert main([*arguments, *split_flags, "--workers", "1"]) == 0
    builder = Sipakmed(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(sample)))

    label_names = builder.info.features["objects"]["label"].names
    assert label_names[0] == "background"  # no box uses it: ids start at 1, as in the label map
    assert {name: index for index, name in enumerate(label_names) if index} == read_label_map(
        converted / "label_map.pbtxt"
    )
    for split, tfds_split in TFDS_SPLITS.items():
        expected = converted_examples(converted, split)
        built = {
            example["image/filename"].decode(): example
            for example in tfds.as_numpy(builder.as_dataset(split=tfds_split))
        }
        assert sorted(built) == sorted(expected) and expected, split
        for name, example in built.items():
            np.testing.assert_array_equal(example["image"], expected[name]["image"], err_msg=name)
            np.testing.assert_allclose(example["objects"]["bbox"], expected[name]["bbox"], atol=1e-6)
            assert example["objects"]["label"].tolist() == expected[name]["label"].tolist(), name
