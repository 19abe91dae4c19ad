"""The one detection type every consumer shares (writers, evaluation, the server).

Boxes are pixels `[x_min, y_min, x_max, y_max]` of the ORIGINAL image. The exported
SavedModel speaks the TF Object Detection API's normalized `[ymin, xmin, ymax, xmax]`;
`boxes.norm_yxyx_to_px` is the single place that converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections on one image.

    boxes_px: float32 [N, 4] xyxy pixels in the original image; scores: float32 [N] in [0, 1],
    sorted high to low; class_ids: int32 [N] label-map ids (from 1; 0, background, never
    appears); labels: the class names of class_ids, same order.
    """

    image: str
    width: int
    height: int
    boxes_px: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        count = len(self.scores)
        if self.boxes_px.shape != (count, 4):
            raise ValueError(f"{self.image}: boxes_px has shape {self.boxes_px.shape}, expected ({count}, 4)")
        if self.class_ids.shape != (count,) or len(self.labels) != count:
            raise ValueError(
                f"{self.image}: {count} scores, class_ids {self.class_ids.shape}, {len(self.labels)} labels"
            )
        if count and (self.class_ids < 1).any():
            raise ValueError(
                f"{self.image}: class ids start at 1 (0 is background), got {self.class_ids.min()}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, min_score: float) -> Detections:
        """The detections scoring at least `min_score`."""
        keep = self.scores >= min_score
        return Detections(
            self.image,
            self.width,
            self.height,
            self.boxes_px[keep],
            self.scores[keep],
            self.class_ids[keep],
            tuple(label for label, kept in zip(self.labels, keep, strict=True) if kept),
        )
