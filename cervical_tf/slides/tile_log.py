"""OUTPUT/<slide>/tiles.jsonl: the tiles already done and their detections, so a rerun resumes.

The first line is `{"run": {...}}`, the settings the tiles were computed with (model, level, scale,
tile, overlap, scores); every later line one finished tile: `{"tile": index, "boxes_px": [[x0, y0,
x1, y1], ...] (level-0 px), "scores": [...], "class_ids": [...], "cut": [...]}`, its detections
after the centre-in-core rule. Lines are appended and flushed one tile at a time; a last line cut
short by an interruption is dropped. A log written with other settings is started afresh.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cervical_tf.inference import tiling

TILE_LOG = "tiles.jsonl"


class TileLog:
    """The finished tiles of one slide run: `done` (index -> RawDetections), `append` to add one."""

    def __init__(self, path: Path, run: dict) -> None:
        self.path = Path(path)
        self.done: dict[int, tiling.RawDetections] = {}
        self.restarted = False
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True) if self.path.exists() else []
        complete = [line for line in lines if line.endswith("\n")]
        header = _parse(complete[0]) if complete else None
        if header is not None and header.get("run") == run:
            kept = complete[:1]
            for line in complete[1:]:
                entry = _parse(line)
                if entry is None:
                    break
                self.done[int(entry["tile"])] = _raw(entry)
                kept.append(line)
        else:
            self.restarted = bool(lines)
            kept = [json.dumps({"run": run}) + "\n"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if kept != lines:
            self.path.write_text("".join(kept), encoding="utf-8")
        self._file = self.path.open("a", encoding="utf-8")

    def append(self, index: int, raw: tiling.RawDetections) -> None:
        """Record tile `index` as done with its detections (level-0 px)."""
        entry = {
            "tile": index,
            "boxes_px": [[round(float(value), 3) for value in box] for box in raw.boxes_px],
            "scores": [round(float(score), 6) for score in raw.scores],
            "class_ids": [int(class_id) for class_id in raw.class_ids],
            "cut": [bool(cut) for cut in raw.cut],
        }
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        self.done[index] = _raw(entry)  # rounded as a rerun reads them, so both merge the same numbers

    def close(self) -> None:
        self._file.close()


def _parse(line: str) -> dict | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _raw(entry: dict) -> tiling.RawDetections:
    return tiling.RawDetections(
        np.asarray(entry["boxes_px"], dtype=np.float32).reshape(-1, 4),
        np.asarray(entry["scores"], dtype=np.float32),
        np.asarray(entry["class_ids"], dtype=np.int32),
        np.asarray(entry["cut"], dtype=bool),
    )
