"""A slide's detections.geojson and detections.csv, written a few thousand detections at a time.

`outputs.write_geojson` and `write_detections_csv` build every feature (every row) in memory and
then the whole text: about 2.4 KB a detection at its peak, nothing on a field, hundreds of MB on a
slide of a hundred thousand cells, so memory grew with the slide (bench/slide_throughput.py). These
write the same bytes a chunk at a time (the features from `outputs.geojson_collection`, the rows
from `outputs.write_detections_csv`), atomically like them.
"""

from __future__ import annotations

import json
from pathlib import Path

from cervical_tf.inference import outputs
from cervical_tf.inference.detections import Detections
from tfrecords_gen.atomic import atomic_path

CHUNK = 4096  # detections per piece written


def write_geojson(path: Path, detections: Detections, model_card: dict | None = None) -> None:
    """`outputs.write_geojson(path, [detections], model_card)`, byte for byte, in chunks."""
    with atomic_path(Path(path)) as temporary, temporary.open("w", encoding="utf-8") as handle:
        handle.write('{"type": "FeatureCollection", "features": [')
        for start in range(0, len(detections), CHUNK):
            features = outputs.geojson_collection([_chunk(detections, start)])["features"]
            handle.write((", " if start else "") + ", ".join(json.dumps(feature) for feature in features))
        handle.write("]")
        if model_card is not None:
            handle.write(', "model_card": ' + json.dumps(model_card))
        handle.write("}\n")


def write_detections_csv(path: Path, detections: Detections) -> None:
    """`outputs.write_detections_csv(path, [detections])`, byte for byte: each chunk written by it
    to a scratch file beside `path`, appended without its header after the first."""
    path = Path(path)
    scratch = path.with_name(f".{path.name}.chunk")
    try:
        with atomic_path(path) as temporary, temporary.open("wb") as handle:
            for start in range(0, max(len(detections), 1), CHUNK):
                outputs.write_detections_csv(scratch, [_chunk(detections, start)])
                text = scratch.read_bytes()
                handle.write(text if not start else text[text.index(b"\n") + 1 :])
    finally:
        scratch.unlink(missing_ok=True)


def _chunk(detections: Detections, start: int) -> Detections:
    part = slice(start, start + CHUNK)
    return Detections(
        detections.image,
        detections.width,
        detections.height,
        detections.boxes_px[part],
        detections.scores[part],
        detections.class_ids[part],
        detections.labels[part],
    )
