"""One module per annotation format; each only parses and returns a `ReadResult`."""

from __future__ import annotations

from collections.abc import Callable

from tfrecords_gen.readers import coco, cric, csv_table, geojson, sipakmed, voc, yolo
from tfrecords_gen.records import ReaderInput, ReadResult

# Format name (the value of `cervical-tf convert --format`) -> read function.
READERS: dict[str, Callable[[ReaderInput], ReadResult]] = {
    "sipakmed": sipakmed.read,
    "voc": voc.read,
    "csv": csv_table.read,
    "coco": coco.read,
    "yolo": yolo.read,
    "cric": cric.read,
    "geojson": geojson.read,
}
