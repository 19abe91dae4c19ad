"""Cell shapes and Papanicolaou-like painting for the synthetic SIPaKMeD sample.

Painting follows transmitted-light microscopy (Beer-Lambert): every stained structure adds optical
density and the image is `background * exp(-density)`. Overlapping cytoplasm therefore looks darker,
as in real clusters, and the order in which cells are painted does not matter.

Polygons are float arrays of shape (N, 2) holding `x, y` pixel coordinates; a cell is built
centred on (0, 0) and moved into place with `Cell.moved`. Sizes are given for a 1024x768 image and
multiplied by `scale` (1.0 at that size).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

_WHITE = 255.0


def _density(red: float, green: float, blue: float) -> np.ndarray:
    """Optical density per channel of a stain that turns white light into this colour."""
    return -np.log(np.array([red, green, blue], dtype=np.float32) / _WHITE)


# Colours a stain shows over a white background at full strength (RGB), stored as optical density.
PINK = _density(240, 166, 132)  # eosinophilic superficial cytoplasm
ORANGE = _density(238, 150, 85)  # keratinised (orangeophilic) cytoplasm
PALE_BLUE_GREEN = _density(184, 202, 214)  # thin cyanophilic intermediate cytoplasm
BLUE_GREEN = _density(132, 172, 182)  # dense cyanophilic parabasal / metaplastic cytoplasm
HEMATOXYLIN = _density(92, 78, 140)  # nucleus, blue-purple
PYKNOTIC = _density(66, 46, 92)  # condensed, dark purple nucleus


@dataclass(frozen=True)
class Stain:
    """How strongly a cell's parts absorb light; `chromatin` is the nucleus texture contrast."""

    cytoplasm: np.ndarray  # (3,) float32 optical density of the cytoplasm
    nucleus: np.ndarray  # (3,) float32 optical density of the nucleus
    chromatin: float
    border: float  # extra cytoplasm density along the cell outline, relative to the cytoplasm


@dataclass(frozen=True)
class Cell:
    """One cell: cytoplasm outline, one or two nuclei, and for koilocytes the perinuclear halo."""

    label: str
    cytoplasm: np.ndarray
    nuclei: tuple[np.ndarray, ...]
    stain: Stain
    halo: np.ndarray | None = None

    def box(self) -> tuple[float, float, float, float]:
        """[x_min, y_min, x_max, y_max] of the cytoplasm, which encloses the whole cell."""
        x_min, y_min = self.cytoplasm.min(axis=0)
        x_max, y_max = self.cytoplasm.max(axis=0)
        return float(x_min), float(y_min), float(x_max), float(y_max)

    def moved(self, dx: float, dy: float) -> Cell:
        """The same cell translated by (dx, dy) pixels."""
        shift = np.array([dx, dy])
        halo = None if self.halo is None else self.halo + shift
        return replace(
            self, cytoplasm=self.cytoplasm + shift, nuclei=tuple(n + shift for n in self.nuclei), halo=halo
        )

    def nucleus_outline(self) -> np.ndarray:
        """The nucleus polygon to annotate: the convex hull of both nuclei of a binucleate cell."""
        if len(self.nuclei) == 1:
            return self.nuclei[0]
        points = np.concatenate(self.nuclei).astype(np.float32)
        return cv2.convexHull(points)[:, 0, :].astype(np.float64)


def make_cell(label: str, scale: float, rng: np.random.Generator) -> Cell:
    """A new cell of class `label` centred on (0, 0), its nuclei guaranteed inside the cytoplasm."""
    cell = _BUILDERS[label](scale, rng)
    return replace(
        cell, nuclei=tuple(_shrink_inside(nucleus, cell.cytoplasm, 0.95) for nucleus in cell.nuclei)
    )


def _superficial_intermediate(scale: float, rng: np.random.Generator) -> Cell:
    """Large flat angular cell, pink (superficial) or pale blue-green (intermediate), pyknotic nucleus."""
    radius = rng.uniform(75, 150) * scale
    cytoplasm = _angular_polygon(radius, rng)
    colour = PINK if rng.random() < 0.6 else PALE_BLUE_GREEN
    nucleus = _blob(max(2.0, rng.uniform(5, 9) * scale), rng.uniform(0.85, 1.0), 0.04, rng)
    nucleus = nucleus + rng.uniform(-0.15, 0.15, 2) * radius
    stain = _stain(colour * rng.uniform(0.7, 1.05), PYKNOTIC, 0.15, 0.5, rng)
    return Cell("Superficial-Intermediate", cytoplasm, (nucleus,), stain)


def _parabasal(scale: float, rng: np.random.Generator) -> Cell:
    """Small round dense cyanophilic cell with a large nucleus (30-45% of its diameter)."""
    radius = rng.uniform(30, 50) * scale
    cytoplasm = _blob(radius, rng.uniform(0.78, 1.0), 0.05, rng)
    nucleus = _blob(radius * rng.uniform(0.3, 0.45), rng.uniform(0.8, 1.0), 0.06, rng)
    stain = _stain(BLUE_GREEN * rng.uniform(0.85, 1.1), HEMATOXYLIN, 0.35, 0.6, rng)
    return Cell("Parabasal", cytoplasm, (nucleus,), stain)


def _koilocytotic(scale: float, rng: np.random.Generator) -> Cell:
    """Intermediate cell with a clear perinuclear halo, sharp rim and enlarged dark (bi)nucleus."""
    radius = rng.uniform(55, 85) * scale
    if rng.random() < 0.5:
        cytoplasm = _angular_polygon(radius, rng)
    else:
        cytoplasm = _blob(radius, rng.uniform(0.75, 0.95), 0.12, rng)
    nucleus_radius = rng.uniform(0.17, 0.24) * radius
    if rng.random() < 0.3:
        direction = _unit_vector(rng) * nucleus_radius * 0.8
        nuclei = tuple(
            _blob(nucleus_radius * 0.8, rng.uniform(0.75, 0.95), 0.15, rng) + s * direction for s in (-1, 1)
        )
    else:
        nuclei = (_blob(nucleus_radius, rng.uniform(0.7, 0.95), 0.15, rng),)
    halo = _blob(radius * rng.uniform(0.45, 0.6), rng.uniform(0.65, 0.95), 0.2, rng)
    halo = _shrink_inside(halo, cytoplasm, 0.9)
    colour = PALE_BLUE_GREEN * 1.5 if rng.random() < 0.5 else PINK * 0.9
    stain = _stain(colour * rng.uniform(0.8, 1.0), HEMATOXYLIN * 1.3, 0.3, 0.8, rng)
    return Cell("Koilocytotic", cytoplasm, nuclei, stain, halo)


def _dyskeratotic(scale: float, rng: np.random.Generator) -> Cell:
    """Small keratinised bright orange cell with a small, dense, dark nucleus."""
    radius = rng.uniform(20, 35) * scale
    cytoplasm = _blob(radius, rng.uniform(0.6, 0.95), 0.1, rng)
    nucleus = _blob(max(2.0, radius * rng.uniform(0.2, 0.28)), rng.uniform(0.7, 1.0), 0.1, rng)
    stain = _stain(ORANGE * rng.uniform(0.95, 1.3), PYKNOTIC, 0.15, 0.5, rng)
    return Cell("Dyskeratotic", cytoplasm, (nucleus,), stain)


def _metaplastic(scale: float, rng: np.random.Generator) -> Cell:
    """Round dense dark blue-green cell, central medium nucleus, sometimes spider projections."""
    radius = rng.uniform(40, 65) * scale
    cytoplasm = _blob(radius, rng.uniform(0.8, 1.0), 0.06, rng, vertices=int(rng.integers(30, 41)))
    if rng.random() < 0.4:
        cytoplasm = _add_spikes(cytoplasm, int(rng.integers(2, 5)), rng)
    nucleus = _blob(radius * rng.uniform(0.25, 0.33), rng.uniform(0.8, 1.0), 0.06, rng)
    stain = _stain(BLUE_GREEN * rng.uniform(1.3, 1.6), HEMATOXYLIN, 0.3, 0.5, rng)
    return Cell("Metaplastic", cytoplasm, (nucleus,), stain)


_BUILDERS = {
    "Superficial-Intermediate": _superficial_intermediate,
    "Parabasal": _parabasal,
    "Koilocytotic": _koilocytotic,
    "Dyskeratotic": _dyskeratotic,
    "Metaplastic": _metaplastic,
}


def _stain(
    cytoplasm: np.ndarray, nucleus: np.ndarray, chromatin: float, border: float, rng: np.random.Generator
) -> Stain:
    """A stain with a little cell-to-cell variation of the nucleus, as on a real slide."""
    nucleus_strength = np.float32(rng.uniform(0.85, 1.1))
    return Stain(cytoplasm.astype(np.float32), nucleus * nucleus_strength, chromatin, border)


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def _rotate(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points turned by a random angle about the origin, so shapes have no preferred direction."""
    cosine, sine = _unit_vector(rng)
    return points @ np.array([[cosine, sine], [-sine, cosine]])


def _blob(
    radius: float, aspect: float, roughness: float, rng: np.random.Generator, vertices: int | None = None
) -> np.ndarray:
    """A perturbed ellipse: smooth low-order wobble plus a little per-vertex noise."""
    count = vertices or int(rng.integers(16, 33))
    step = 2 * np.pi / count
    angles = np.arange(count) * step + rng.uniform(-0.3, 0.3, count) * step
    orders = np.arange(2, 6)[:, None]
    wobble = (
        roughness * rng.normal(size=(4, 1)) / orders * np.cos(orders * angles + rng.uniform(0, 6.3, (4, 1)))
    ).sum(0)
    radii = radius * np.clip(1 + wobble + 0.25 * roughness * rng.normal(size=count), 0.6, 1.4)
    points = np.stack([radii * np.cos(angles), aspect * radii * np.sin(angles)], axis=1)
    return _rotate(points, rng)


def _angular_polygon(radius: float, rng: np.random.Generator) -> np.ndarray:
    """A flat squamous cell: 5-8 corners joined by gently curved edges, 15-40 vertices in all."""
    corners = int(rng.integers(5, 9))
    step = 2 * np.pi / corners
    angles = np.arange(corners) * step + rng.uniform(-0.3, 0.3, corners) * step
    corner_points = (
        np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius * rng.uniform(0.75, 1.1, (corners, 1))
    )
    per_edge = max(3, int(rng.integers(12, 41)) // corners)
    fractions = np.arange(per_edge)[:, None] / per_edge
    edges = []
    for start, end in zip(corner_points, np.roll(corner_points, -1, axis=0), strict=True):
        normal = np.array([end[1] - start[1], start[0] - end[0]])  # outward for counter-clockwise corners
        bulge = np.sin(np.pi * fractions) * rng.normal(0.03, 0.05)  # edges gently curved, not ruled
        edges.append(start + fractions * (end - start) + bulge * normal)
    points = np.concatenate(edges)
    points = points + rng.normal(0, 0.012 * radius, points.shape)
    stretch = rng.uniform(1.0, 1.3)
    return _rotate(points * np.array([stretch, 1 / stretch]), rng)


def _add_spikes(polygon: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Push a few separated vertices outwards: the "spider" projections of metaplastic cells."""
    spiked = polygon.copy()
    starts = rng.choice(len(polygon), size=count, replace=False)
    for start in starts:
        spiked[(start + np.array([-1, 1])) % len(polygon)] *= 1.08  # a tapered base, not a thorn
        spiked[start] *= rng.uniform(1.45, 1.9)
    return spiked


def _shrink_inside(inner: np.ndarray, outer: np.ndarray, margin: float) -> np.ndarray:
    """`inner` scaled down about the origin until every vertex, grown by 1/margin, lies in `outer`."""
    contour = outer.astype(np.float32)
    for _ in range(20):
        if all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in inner / margin):
            return inner
        inner = inner * 0.9
    return inner


def render_image(
    cells: list[Cell], width: int, height: int, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """The cluster image, (height, width, 3) uint8 RGB: background, cells, debris, blur and noise."""
    density = np.zeros((height, width, 3), dtype=np.float32)
    for cell in cells:
        paint_cell(density, cell, rng)
    _paint_debris(density, scale, rng)
    image = _background(width, height, rng) * np.exp(-density)
    image = cv2.GaussianBlur(image, (0, 0), 0.6 + 0.4 * scale)
    image += rng.standard_normal(image.shape, dtype=np.float32) * 2.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def paint_cell(density: np.ndarray, cell: Cell, rng: np.random.Generator) -> None:
    """Add the cell's optical density into `density` ((H, W, 3) float32), inside its box only."""
    height, width = density.shape[:2]
    x_min, y_min, x_max, y_max = cell.box()
    left, top = max(0, int(x_min) - 4), max(0, int(y_min) - 4)
    right, bottom = min(width, int(np.ceil(x_max)) + 5), min(height, int(np.ceil(y_max)) + 5)
    shape = (bottom - top, right - left)
    origin = np.array([left, top])
    painted = _cytoplasm_amount(cell, origin, shape, rng)[..., None] * cell.stain.cytoplasm
    for nucleus in cell.nuclei:
        painted += (
            _nucleus_amount(nucleus - origin, shape, cell.stain.chromatin, rng)[..., None]
            * cell.stain.nucleus
        )
    density[top:bottom, left:right] += painted


def _nucleus_amount(
    nucleus: np.ndarray, shape: tuple[int, int], chromatin: float, rng: np.random.Generator
) -> np.ndarray:
    """Relative stain amount of a nucleus: granular chromatin and a slightly darker membrane."""
    mask = _fill(nucleus, shape)
    granules = np.clip(1 + chromatin * _granules(shape, 1.0, rng), 0.2, None)
    membrane = np.maximum(mask - cv2.GaussianBlur(mask, (0, 0), 1.0), 0)
    return mask * granules + 0.8 * membrane


def _cytoplasm_amount(
    cell: Cell, origin: np.ndarray, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Relative stain amount over the cell window: mottled body, darker inner rim, halo, folds."""
    mask = _fill(cell.cytoplasm - origin, shape)
    edge_width = 1.0 + min(shape) / 80
    rim = np.maximum(mask - cv2.GaussianBlur(mask, (0, 0), edge_width), 0)
    mottling = _smooth_noise(shape, max(8.0, min(shape) / 4), 0.4, rng)
    grain = 1 + 0.06 * _granules(shape, 1.2, rng)
    amount = mask * mottling * grain + 2.0 * cell.stain.border * rim
    amount += mask * _folds(cell, origin, shape, rng)
    if cell.halo is not None:
        cavity = cv2.GaussianBlur(_fill(cell.halo - origin, shape), (0, 0), 0.8)
        condensed = cv2.GaussianBlur(cavity, (0, 0), 2.5 * edge_width) - cavity
        amount = (
            amount * (1 - 0.93 * cavity) + 3.0 * np.maximum(condensed, 0) * mask
        )  # cleared, rim condensed
    return amount


def _folds(cell: Cell, origin: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Thin darker streaks across large flat cells, where the cytoplasm is folded or wrinkled."""
    folds = np.zeros(shape, dtype=np.float32)
    if cell.label not in ("Superficial-Intermediate", "Koilocytotic") or rng.random() < 0.4:
        return folds
    corners = cell.cytoplasm - origin
    for _ in range(int(rng.integers(1, 3))):
        start, end = corners[rng.choice(len(corners), 2, replace=False)]
        start = start + (end - start) * rng.uniform(0.0, 0.3)
        end = end - (end - start) * rng.uniform(0.0, 0.3)
        points = np.rint(np.stack([start, end]) * 16).astype(np.int32)
        thickness = int(rng.integers(1, 4))
        cv2.line(folds, tuple(points[0]), tuple(points[1]), 0.5, thickness, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(folds, (0, 0), 1.2)


def _fill(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage (0..1 float32) of a polygon, with sub-pixel vertex positions."""
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255


def _smooth_noise(
    shape: tuple[int, int], period: float, amplitude: float, rng: np.random.Generator
) -> np.ndarray:
    """1 +- amplitude/2, varying smoothly over about `period` pixels (uneven stain uptake)."""
    grid = (max(2, int(shape[0] / period) + 2), max(2, int(shape[1] / period) + 2))
    coarse = rng.random(grid, dtype=np.float32)
    smooth = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return 1 + amplitude * (smooth - 0.5)


def _granules(shape: tuple[int, int], size: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-spread blotches about 2*size px across: chromatin or cytoplasm granules."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), size)
    return noise / max(float(noise.std()), 1e-6)


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Near-white, slightly bluish glass with low-frequency unevenness in brightness and tint."""
    base = (np.array([240, 246, 249]) + rng.uniform(-5, 2) + rng.uniform(-1.5, 1.5, 3)).astype(np.float32)
    light = _smooth_noise((height, width), max(width, height) / 3, 0.05, rng)
    tint = np.stack(
        [_smooth_noise((height, width), max(width, height) / 3, 0.012, rng) for _ in range(3)], -1
    )
    return np.minimum(base * light[..., None] * tint, _WHITE)


def _paint_debris(density: np.ndarray, scale: float, rng: np.random.Generator) -> None:
    """Scatter a few tiny stained specks (mucus and bacteria-sized debris, not cells)."""
    height, width = density.shape[:2]
    count = int(rng.poisson(20 * width * height / (1024 * 768)))
    for _ in range(count):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = max(1, round(rng.uniform(0.5, 2.0) * scale * 1.5))
        colour = (HEMATOXYLIN if rng.random() < 0.7 else ORANGE) * rng.uniform(0.15, 0.5)
        cv2.circle(density, centre, radius, tuple(float(c) for c in colour), thickness=-1)
