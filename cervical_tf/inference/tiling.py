"""Cutting large fields into overlapping tiles and merging the tiles' detections.

Large fields can be cut into overlapping tiles (`predict(..., tile=T, overlap=O)`). Tiles are
T x T, stride T - O, the last one in each row and column flush with the border. Their detections
are merged in two steps, both class-aware:

1. A box that touches an inner tile edge (an edge that is not the image border, within
   `max(2, 1% of T)` px) may be an object cut in two. It is dropped when a box of the same class
   that touches no inner edge covers at least `CONTAINMENT_THRESHOLD` of its area: a
   neighbouring tile saw the object whole. Plain NMS cannot do this, as a cut half has an IoU
   of only about 0.5 or less with the whole box.
2. Non-maximum suppression per class at IoU `IOU_THRESHOLD` removes the duplicates that
   neighbouring tiles both saw whole.

Every object no larger than the overlap lies whole inside some tile, so choose the overlap at
least as large as the largest object. Larger objects that no tile sees whole stay as the pieces
the tiles saw (they are not glued together, which would also glue neighbouring cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cervical_tf import boxes

CONTAINMENT_THRESHOLD = 0.7


@dataclass(frozen=True)
class RawDetections:
    """Valid detections in image pixels before merging: boxes_px float32 [N, 4] xyxy, scores
    float32 [N], class_ids int32 [N], cut bool [N] (touches an inner tile edge)."""

    boxes_px: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    cut: np.ndarray


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along a side of `length` px: stride tile - overlap, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def tile_count(width: int, height: int, tile: int, overlap: int) -> int:
    """How many tiles `tile_starts` cuts a width x height image into."""
    return len(tile_starts(width, tile, overlap)) * len(tile_starts(height, tile, overlap))


def merge_tiles(raw: RawDetections, agnostic: bool = False) -> np.ndarray:
    """Indices into `raw` to keep: cut boxes covered by a whole box go, then NMS.

    "Covered" and NMS compare boxes of the same class, or of any class when `agnostic`.
    """
    whole = np.flatnonzero(~raw.cut)
    dropped = np.zeros(len(raw.scores), dtype=bool)
    for index in np.flatnonzero(raw.cut):
        others = whole if agnostic else whole[raw.class_ids[whole] == raw.class_ids[index]]
        covered = boxes.intersection(raw.boxes_px[index], raw.boxes_px[others])[0] / max(
            boxes.area(raw.boxes_px[index])[0], 1e-6
        )
        dropped[index] = bool((covered >= CONTAINMENT_THRESHOLD).any())
    kept = np.flatnonzero(~dropped)
    return kept[
        boxes.non_max_suppression(
            raw.boxes_px[kept], raw.scores[kept], raw.class_ids[kept], agnostic=agnostic
        )
    ]


def concatenate(parts: list[RawDetections]) -> RawDetections:
    """One RawDetections holding every part's detections, in order."""
    fields = ("boxes_px", "scores", "class_ids", "cut")
    return RawDetections(*(np.concatenate([getattr(part, field) for part in parts]) for field in fields))
