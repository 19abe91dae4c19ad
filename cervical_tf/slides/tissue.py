"""Where the cells are: a tissue mask from a slide thumbnail, so background tiles are never read.

Glass is bright and grey; Pap-stained cells are coloured. The mask is the thumbnail's HSV
saturation above Otsu's threshold (never below `MIN_SATURATION`, so a blank slide's noise is not
tissue), grown by `GROW_PX` thumbnail pixels so faint cell borders at a tile's edge still count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THUMBNAIL_SIDE = 2048  # px, the longer side of the thumbnail the mask is made from
MIN_SATURATION = 0.05
GROW_PX = 2


@dataclass(frozen=True)
class TissueMask:
    """mask bool [h, w] over the whole slide; `downsample`: level-0 px per mask px (x, y)."""

    mask: np.ndarray
    downsample: tuple[float, float]
    threshold: float

    @property
    def fraction(self) -> float:
        """Share of the slide's area that is tissue, 0..1."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def any_in(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """True when the level-0 rectangle [x0, x1) x [y0, y1) holds any tissue."""
        scale_x, scale_y = self.downsample
        height, width = self.mask.shape
        left, top = max(int(x0 // scale_x), 0), max(int(y0 // scale_y), 0)
        right, bottom = min(int(-(-x1 // scale_x)), width), min(int(-(-y1 // scale_y)), height)
        return bool(left < right and top < bottom and self.mask[top:bottom, left:right].any())


def tissue_mask(thumbnail: np.ndarray, slide_size: tuple[int, int]) -> TissueMask:
    """The tissue of `thumbnail` (uint8 [h, w, 3] of a slide of level-0 `slide_size` (width, height))."""
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu
    from skimage.morphology import dilation

    saturation = rgb2hsv(thumbnail)[:, :, 1]
    spread = float(saturation.max() - saturation.min())
    threshold = max(float(threshold_otsu(saturation)) if spread > 0 else 1.0, MIN_SATURATION)
    mask = saturation > threshold
    if GROW_PX:
        mask = dilation(mask, np.ones((2 * GROW_PX + 1, 2 * GROW_PX + 1), dtype=bool))
    height, width = mask.shape
    return TissueMask(mask, (slide_size[0] / width, slide_size[1] / height), threshold)


def all_tissue(slide_size: tuple[int, int]) -> TissueMask:
    """A mask that keeps every tile (`--no-tissue-mask`)."""
    return TissueMask(np.ones((1, 1), dtype=bool), (float(slide_size[0]), float(slide_size[1])), 0.0)
