"""The seam merge of a whole slide's detections, in time that grows with their number, not its square.

`tiling.merge_tiles` compares every cut box with every whole box, then runs greedy NMS over all the
boxes: quadratic, which is nothing on a field and minutes on a slide (16,000 cells took 16 s, and
the time quadruples with every doubling; bench/slide_throughput.py). Both of its steps only ever
compare boxes that overlap (a box is covered by, or suppressed by, a box it intersects), so the
boxes split into groups of boxes linked by overlaps (the connected components of the graph of
positive intersections, found through a k-d tree of the box centres), each group is merged by
`tiling.merge_tiles` alone, and the union is exactly what `merge_tiles` keeps on all of them at once,
in the same order.
"""

from __future__ import annotations

import numpy as np

from cervical_tf.inference import tiling


def merge_slide(raw: tiling.RawDetections, agnostic: bool = False) -> np.ndarray:
    """Indices into `raw` to keep: `tiling.merge_tiles(raw, agnostic)`, the same indices in the same
    order (by descending score; ties by class when not `agnostic`, then by index)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    count = len(raw.scores)
    if count < 2:
        return tiling.merge_tiles(raw, agnostic=agnostic)
    boxes = np.asarray(raw.boxes_px, dtype=np.float64)
    # Boxes that intersect have centres closer than their mean side along each axis, so no farther
    # apart (Chebyshev distance) than the longest side: the candidates, then the real overlaps.
    reach = float(np.max(boxes[:, 2:] - boxes[:, :2], initial=0.0))
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    pairs = cKDTree(centres).query_pairs(max(reach, 0.0), p=np.inf, output_type="ndarray")
    first, second = boxes[pairs[:, 0]], boxes[pairs[:, 1]]
    shared = np.minimum(first[:, 2:], second[:, 2:]) - np.maximum(first[:, :2], second[:, :2])
    pairs = pairs[(shared > 0).all(axis=1)]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, group = connected_components(graph, directed=False)
    sizes = np.bincount(group)
    kept = [np.flatnonzero(sizes[group] == 1)]  # a box overlapping none is always kept
    members = np.argsort(group, kind="stable")  # each group's boxes together, by ascending index
    ends = np.cumsum(sizes)
    for index in np.flatnonzero(sizes > 1):
        chosen = members[ends[index] - sizes[index] : ends[index]]
        part = tiling.RawDetections(
            raw.boxes_px[chosen], raw.scores[chosen], raw.class_ids[chosen], raw.cut[chosen]
        )
        kept.append(chosen[tiling.merge_tiles(part, agnostic=agnostic)])
    keep = np.concatenate(kept).astype(np.int64)
    scores = -np.asarray(raw.scores)[keep]
    order = np.lexsort((keep, scores) if agnostic else (keep, np.asarray(raw.class_ids)[keep], scores))
    return keep[order]
