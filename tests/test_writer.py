"""writer: what official.vision's decoder reads back is what went in; outputs appear whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder
from PIL import Image

from cervical_tf.errors import DataError
from tfrecords_gen import writer
from tfrecords_gen.label_map import read_label_map
from tfrecords_gen.records import Box, ImageRecord

LABEL_MAP = {"LSIL": 1, "NILM": 2}


def make_record(
    folder: Path, name: str, size: tuple[int, int], mode: str, boxes: tuple[Box, ...]
) -> ImageRecord:
    rng = np.random.default_rng(len(name))
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 255, size=(size[1], size[0], channels), dtype=np.uint8).squeeze()
    path = folder / name
    Image.fromarray(pixels, mode).save(path)
    return ImageRecord(path, name, size[0], size[1], name, boxes)


@pytest.fixture
def records(tmp_path: Path) -> list[ImageRecord]:
    source = tmp_path / "source"
    source.mkdir()
    return [
        make_record(source, "a.bmp", (64, 48), "RGB", (Box("NILM", 4, 6, 30, 40), Box("LSIL", 0, 0, 64, 48))),
        make_record(source, "b.png", (50, 40), "L", (Box("LSIL", 10.5, 2.25, 20, 39, difficult=True),)),
        make_record(source, "c.tif", (32, 32), "RGB", ()),
    ]


def decode_all(pattern: str) -> dict[str, dict]:
    decoder = TfExampleDecoder()
    decoded = {}
    for serialized in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
        tensors = decoder.decode(serialized)
        example = tf.train.Example.FromString(serialized.numpy())
        name = example.features.feature["image/filename"].bytes_list.value[0].decode()
        decoded[name] = {key: value.numpy() for key, value in tensors.items()}
    return decoded


def test_writer_round_trip_through_official_vision_decoder(
    tmp_path: Path, records: list[ImageRecord]
) -> None:
    assignment = {"a.bmp": "train", "b.png": "train", "c.tif": "val"}
    summary = writer.write_dataset(
        tmp_path / "out", records, assignment, LABEL_MAP, seed=0, workers=1, progress=False
    )
    decoded = decode_all(str(summary.out_dir / "train-*-of-*.tfrecord")) | decode_all(
        str(summary.out_dir / "val-*-of-*.tfrecord")
    )
    assert set(decoded) == {"a.bmp", "b.png", "c.tif"}
    for record in records:
        tensors = decoded[record.name]
        boxes_px = tensors["groundtruth_boxes"] * [record.height, record.width, record.height, record.width]
        expected = [[box.y_min, box.x_min, box.y_max, box.x_max] for box in record.boxes]
        np.testing.assert_allclose(boxes_px.reshape(-1, 4), np.reshape(expected, (-1, 4)), atol=1e-3)
        assert list(tensors["groundtruth_classes"]) == [LABEL_MAP[box.label] for box in record.boxes]
        assert tensors["image"].shape == (record.height, record.width, 3)
        assert int(tensors["source_id"]) > 0  # numeric, as the evaluator needs
        original = np.asarray(Image.open(record.image_path).convert("RGB"))
        np.testing.assert_array_equal(tensors["image"], original)  # lossless, grey expanded to RGB
        np.testing.assert_allclose(tensors["groundtruth_area"], [box.area for box in record.boxes])


def test_writer_companion_files_agree_with_records(tmp_path: Path, records: list[ImageRecord]) -> None:
    assignment = {"a.bmp": "train", "b.png": "val", "c.tif": "val"}
    out = writer.write_dataset(
        tmp_path / "out", records, assignment, LABEL_MAP, 0, workers=1, progress=False
    ).out_dir
    assert read_label_map(out / "label_map.pbtxt") == LABEL_MAP
    coco = json.loads((out / "val_coco.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == ["b.png", "c.tif"]
    assert coco["annotations"][0]["bbox"] == [10.5, 2.25, 9.5, 36.75]
    assert coco["categories"] == [{"id": 1, "name": "LSIL"}, {"id": 2, "name": "NILM"}]
    stats = json.loads((out / "dataset_stats.json").read_text())
    assert stats["splits"]["train"]["classes"] == {"LSIL": 1, "NILM": 1}
    assert stats["splits"]["val"]["images"] == 2 and stats["splits"]["val"]["negative_images"] == 1
    assert (out / "splits.csv").read_text().splitlines()[1:] == [
        "a.bmp,a.bmp,train",
        "b.png,b.png,val",
        "c.tif,c.tif,val",
    ]


def test_writer_folds_write_one_complete_folder_per_fold(tmp_path: Path, records: list[ImageRecord]) -> None:
    assignment = {"a.bmp": "fold-1", "b.png": "fold-2", "c.tif": "fold-2"}
    out = writer.write_dataset(
        tmp_path / "out", records, assignment, LABEL_MAP, 0, workers=1, progress=False
    ).out_dir
    assert set(decode_all(str(out / "fold-1" / "train-*"))) == {"b.png", "c.tif"}
    assert set(decode_all(str(out / "fold-1" / "val-*"))) == {"a.bmp"}
    assert set(decode_all(str(out / "fold-2" / "val-*"))) == {"b.png", "c.tif"}
    assert json.loads((out / "dataset_stats.json").read_text())["splits"].keys() == {"fold-1", "fold-2"}


def test_writer_interrupted_run_leaves_previous_output_untouched(
    tmp_path: Path, records: list[ImageRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assignment = dict.fromkeys(("a.bmp", "b.png", "c.tif"), "train")
    writer.write_dataset(out, records, assignment, LABEL_MAP, 0, workers=1, progress=False)
    before = sorted(path.name for path in out.iterdir())

    def fail_on_second(path: Path):
        if path.name == "b.png":
            raise KeyboardInterrupt
        return real_encode(path)

    real_encode = writer.encode_image
    monkeypatch.setattr(writer, "encode_image", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        writer.write_dataset(out, records, assignment, LABEL_MAP, 0, workers=1, progress=False)
    assert sorted(path.name for path in out.iterdir()) == before
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_writer_refuses_to_replace_a_folder_that_is_not_a_conversion(
    tmp_path: Path, records: list[ImageRecord]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(DataError, match="not the output of an earlier"):
        writer.write_dataset(out, records, dict.fromkeys(("a.bmp", "b.png", "c.tif"), "train"), LABEL_MAP, 0)
    assert (out / "thesis.docx").read_text() == "precious"


def test_writer_16_bit_grey_gets_the_pixels_prediction_sees(tmp_path: Path) -> None:
    """Training records and `predict` scale 16-bit grey the same way (by 1/257), not clipped at 255."""
    import io

    from cervical_tf.images import load_image
    from tfrecords_gen.encode import encode_image

    path = tmp_path / "grey16.png"
    Image.fromarray(np.linspace(0, 65535, 32 * 48).astype(np.uint16).reshape(32, 48)).save(path)
    stored = np.asarray(Image.open(io.BytesIO(encode_image(path).data)).convert("RGB"))
    assert stored.max() == 255 and stored.min() == 0  # scaled, not clipped
    np.testing.assert_array_equal(stored, load_image(path))
