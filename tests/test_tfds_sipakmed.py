"""The TFDS builder yields the same boxes, classes and splits as `convert` on the generated sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tfrecords_gen.readers.sipakmed import CLASS_NAMES
from tfrecords_gen.sample import SampleSpec, generate_sample
from tfrecords_gen.split import split_by_fractions
from tfrecords_gen.tfds_sipakmed import Sipakmed, checked_records


def test_tfds_sipakmed_matches_the_converter(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    generate_sample(sample, SampleSpec(images=10, width=320, height=256, seed=5), progress=False)
    builder = Sipakmed(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(sample)))

    records = {record.name: record for record in checked_records(sample)}
    assignment = split_by_fractions(list(records.values()), 0.15, 0.15, seed=0)
    seen = set()
    for split, tfds_split in (("train", "train"), ("val", "validation"), ("test", "test")):
        for example in tfds.as_numpy(builder.as_dataset(split=tfds_split)):
            name = example["image/filename"].decode()
            record = records[name]
            assert assignment[name] == split
            scale = np.array([record.height, record.width, record.height, record.width])
            expected = [[box.y_min, box.x_min, box.y_max, box.x_max] for box in record.boxes]
            np.testing.assert_allclose(example["objects"]["bbox"] * scale, expected, atol=0.01)
            assert [CLASS_NAMES[index] for index in example["objects"]["label"]] == list(record.labels)
            assert example["image"].shape == (record.height, record.width, 3)
            seen.add(name)
    assert seen == set(records)
