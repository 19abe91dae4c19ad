"""The format table the CLI looks readers up in, and the readers' no-TensorFlow contract."""

from __future__ import annotations

import subprocess
import sys

from tfrecords_gen.readers import READERS, coco, cric, csv_table, geojson, sipakmed, voc, yolo


def test_readers_maps_every_format_name_to_its_module() -> None:
    expected = {
        "sipakmed": sipakmed.read,
        "voc": voc.read,
        "csv": csv_table.read,
        "coco": coco.read,
        "yolo": yolo.read,
        "cric": cric.read,
        "geojson": geojson.read,
    }
    assert expected == READERS


def test_readers_never_import_tensorflow() -> None:
    code = "import sys, tfrecords_gen.readers; print([m for m in sys.modules if m.startswith('tensorflow')])"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
