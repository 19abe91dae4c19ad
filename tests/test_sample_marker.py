"""convert carries `cervical-tf sample`'s marker into dataset_stats.json, so a model card can say
that a model never saw a real cell; real images (even beside a sample) are never counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cervical_tf.errors import DataError
from tfrecords_gen.convert import ConvertRequest, convert
from tfrecords_gen.sample import SampleSpec, generate_sample
from tfrecords_gen.sample_marker import SAMPLE_MARKER

SPEC = SampleSpec(images=5, seed=1, width=256, height=256)


def converted_stats(source: Path, output: Path) -> dict:
    request = ConvertRequest("sipakmed", source, output, val=0.2, test=0.2, workers=1, progress=False)
    assert convert(request).written is not None
    return json.loads((output / "dataset_stats.json").read_text())


def test_a_converted_sample_says_every_image_is_synthetic(tmp_path: Path) -> None:
    generate_sample(tmp_path / "sample", SPEC, progress=False)
    stats = converted_stats(tmp_path / "sample", tmp_path / "data")
    per_split = {split: numbers["images"] for split, numbers in stats["splits"].items()}
    assert stats["synthetic_sample"] == {"generator": "cervical-tf sample", "images": per_split}
    assert sum(per_split.values()) == 5


def test_real_images_beside_a_sample_are_not_synthetic(tmp_path: Path) -> None:
    """A sample written into a folder that holds real data marks only its own class folders."""
    generate_sample(tmp_path / "drawn", SampleSpec(images=5, seed=9, width=256, height=256), progress=False)
    shutil.copytree(tmp_path / "drawn" / "im_Parabasal", tmp_path / "mixed" / "real" / "im_Parabasal")
    generate_sample(tmp_path / "mixed", SPEC, progress=False)  # beside real/: marker in mixed/
    assert (tmp_path / "mixed" / SAMPLE_MARKER).is_file()
    stats = converted_stats(tmp_path / "mixed", tmp_path / "data")
    assert sum(stats["synthetic_sample"]["images"].values()) == 5
    assert sum(numbers["images"] for numbers in stats["splits"].values()) == 6

    shutil.rmtree(tmp_path / "drawn" / "im_Parabasal")
    (tmp_path / "drawn" / SAMPLE_MARKER).unlink()  # no marker: nothing says these are drawn
    assert converted_stats(tmp_path / "drawn", tmp_path / "unmarked")["synthetic_sample"] is None


def test_a_damaged_marker_is_a_data_error(tmp_path: Path) -> None:
    generate_sample(tmp_path / "sample", SPEC, progress=False)
    (tmp_path / "sample" / SAMPLE_MARKER).write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=SAMPLE_MARKER):
        converted_stats(tmp_path / "sample", tmp_path / "data")
