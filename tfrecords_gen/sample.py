"""Generate a synthetic Pap smear sample in SIPaKMeD's on-disk layout.

The sample is the project's built-in data set for the demo and the tests: the SIPaKMeD reader
reads it like the real thing, and a small detector can learn its five classes in minutes.
Layout (see shared/formats/SIPAKMED.md):

    out_dir/im_<Class>/NNN.bmp          24-bit RGB cluster image, NNN = 001, 002, ... per folder
    out_dir/im_<Class>/NNN_cytMM.dat    cytoplasm polygon of annotated cell MM, one `x,y` a line
    out_dir/im_<Class>/NNN_nucMM.dat    nucleus polygon of the same cell
    out_dir/SYNTHETIC_SAMPLE.json       marks the class folders as drawn (see sample_marker.py)

Every annotated cell of an image in `im_X/` is of class X. With `label_fraction < 1` an image also
holds unannotated cells, as SIPaKMeD does. Output is byte-identical for a given spec.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cervical_tf import boxes as box_geometry
from tfrecords_gen.sample_cells import Cell, make_cell, render_image
from tfrecords_gen.sample_marker import SAMPLE_MARKER, write_sample_marker

CLASS_FOLDERS = {
    "Superficial-Intermediate": "im_Superficial-Intermediate",
    "Parabasal": "im_Parabasal",
    "Koilocytotic": "im_Koilocytotic",
    "Dyskeratotic": "im_Dyskeratotic",
    "Metaplastic": "im_Metaplastic",
}

MAX_OVERLAP_IOU = 0.3  # a new cell may overlap an earlier one's box by at most this IoU ...
MAX_COVERED_FRACTION = 0.6  # ... and cover at most this fraction of the smaller box
PLACEMENT_ATTEMPTS = 80
EDGE_MARGIN = 2.0  # pixels kept free between a cytoplasm polygon and the image border


@dataclass(frozen=True)
class SampleSpec:
    """What to generate. Images go round-robin over the five classes, so each gets about images/5.

    `cells_per_image` is the (min, max) number of cells of the folder's class in an image; with
    `label_fraction == 1` all of them are annotated and nothing else is drawn. With F < 1 about
    F of them are annotated (at least one) and about (1 - F) * annotated cells of other classes
    (at least one) are added without annotation.
    """

    images: int = 50
    seed: int = 0
    width: int = 1024
    height: int = 768
    label_fraction: float = 1.0
    cells_per_image: tuple[int, int] = (3, 7)

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError(f"images must be at least 1, got {self.images}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if self.width < 256 or self.height < 256:
            raise ValueError(f"width and height must be at least 256 pixels, got {self.width}x{self.height}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        low, high = self.cells_per_image
        if not 1 <= low <= high:
            raise ValueError(
                f"cells_per_image must be (min, max) with 1 <= min <= max, got {self.cells_per_image}"
            )


@dataclass(frozen=True)
class SampleSummary:
    """What was written: image count, annotated cells per class, all cells drawn, and where."""

    images: int
    cells: dict[str, int]
    out_dir: Path
    drawn_cells: int


@dataclass(frozen=True)
class PlacedCell:
    """A cell at its final position in the image, and whether it gets .dat files."""

    cell: Cell
    annotated: bool


def generate_sample(out_dir: Path, spec: SampleSpec, progress: bool = True) -> SampleSummary:
    """Write the sample to `out_dir` atomically: into a hidden temp dir beside it, then renamed.

    Raises FileExistsError when a class folder in `out_dir` already holds files, so two samples
    are never mixed; an interrupted run leaves `out_dir` untouched and no temp dir behind.
    """
    out_dir = Path(out_dir)
    _refuse_existing(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        cells, drawn = _write_images(staging, spec, progress)
        write_sample_marker(staging, CLASS_FOLDERS.values(), asdict(spec))
        _refuse_existing(out_dir)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SampleSummary(images=spec.images, cells=cells, out_dir=out_dir, drawn_cells=drawn)


def _refuse_existing(out_dir: Path) -> None:
    """Raise FileExistsError when `out_dir` is a file or any class folder in it holds files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    for folder in CLASS_FOLDERS.values():
        path = out_dir / folder
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(
                f"{path} already exists and is not empty; write the sample to a new or empty directory "
                "(samples are never mixed)"
            )


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished sample into place; a single rename unless `out_dir` already has content."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    for folder in CLASS_FOLDERS.values():  # out_dir holds other things: move each class folder in
        target = out_dir / folder
        if target.exists():
            target.rmdir()  # empty, checked by _refuse_existing
        (staging / folder).rename(target)
    (staging / SAMPLE_MARKER).replace(out_dir / SAMPLE_MARKER)
    staging.rmdir()


def _write_images(staging: Path, spec: SampleSpec, progress: bool) -> tuple[dict[str, int], int]:
    """Render and write every image; return annotated cells per class and all cells drawn."""
    labels = list(CLASS_FOLDERS)
    for folder in CLASS_FOLDERS.values():
        (staging / folder).mkdir()
    annotated = dict.fromkeys(labels, 0)
    drawn = 0
    scale = min(spec.width / 1024, spec.height / 768)  # cell sizes are defined for 1024x768
    for index in tqdm(range(spec.images), desc="sample", unit="img", disable=not progress):
        label = labels[index % len(labels)]
        rng = np.random.default_rng([spec.seed, index])  # each image independent of the others
        placed = _plan_image(label, spec, scale, rng)
        pixels = render_image([p.cell for p in placed], spec.width, spec.height, scale, rng)
        folder = staging / CLASS_FOLDERS[label]
        _write_cluster(folder, index // len(labels) + 1, pixels, [p.cell for p in placed if p.annotated])
        annotated[label] += sum(p.annotated for p in placed)
        drawn += len(placed)
    return annotated, drawn


def _plan_image(label: str, spec: SampleSpec, scale: float, rng: np.random.Generator) -> list[PlacedCell]:
    """Choose and place the cells of one image of class `label` (annotated ones placed first)."""
    low, high = spec.cells_per_image
    own = int(rng.integers(low, high + 1))
    if spec.label_fraction >= 1:
        annotated, others = own, 0
    else:
        annotated = max(1, round(spec.label_fraction * own))
        others = max(1, round((1 - spec.label_fraction) * annotated))
    other_labels = [name for name in CLASS_FOLDERS if name != label]
    wanted = [(label, number < annotated) for number in range(own)]
    wanted += [(str(rng.choice(other_labels)), False) for _ in range(others)]
    placed: list[PlacedCell] = []
    group_left, group_anchor = 0, None
    for cell_label, is_annotated in wanted:
        cell = make_cell(cell_label, scale, rng)
        if cell_label == "Dyskeratotic" and group_anchor is not None:
            anchor, tightness = group_anchor, (0.4, 0.8)  # keratinised cells come in tight groups
        elif placed and rng.random() < 0.6:
            anchor, tightness = placed[int(rng.integers(len(placed)))].cell, (0.7, 1.1)
        else:
            anchor, tightness = None, (0.0, 0.0)
        position = _find_place(cell, placed, anchor, tightness, spec, rng)
        if position is None:
            continue
        moved = cell.moved(*position)
        placed.append(PlacedCell(moved, is_annotated))
        if cell_label == "Dyskeratotic":
            group_left, group_anchor = _next_group(group_left, group_anchor, moved, rng)
    return placed


def _next_group(
    left: int, anchor: Cell | None, cell: Cell, rng: np.random.Generator
) -> tuple[int, Cell | None]:
    """Count down the current group of 3-6 dyskeratotic cells; a cell placed alone starts one."""
    if anchor is None:
        return int(rng.integers(2, 6)), cell
    return (left - 1, anchor) if left > 1 else (0, None)


def _find_place(
    cell: Cell,
    placed: list[PlacedCell],
    anchor: Cell | None,
    tightness: tuple[float, float],
    spec: SampleSpec,
    rng: np.random.Generator,
) -> tuple[float, float] | None:
    """A shift that keeps the cell inside the image and overlapping little; None if none found."""
    x_min, y_min, x_max, y_max = cell.box()
    low_x, high_x = EDGE_MARGIN - x_min, spec.width - 1 - EDGE_MARGIN - x_max
    low_y, high_y = EDGE_MARGIN - y_min, spec.height - 1 - EDGE_MARGIN - y_max
    if low_x > high_x or low_y > high_y:
        return None
    boxes = [p.cell.box() for p in placed]
    anchor_box = anchor.box() if anchor is not None else None
    for attempt in range(PLACEMENT_ATTEMPTS):
        if anchor_box is not None and attempt < PLACEMENT_ATTEMPTS // 2:  # near the anchor first
            reach = (_radius(anchor_box) + _radius(cell.box())) * rng.uniform(*tightness)
            angle = rng.uniform(0, 2 * np.pi)
            dx = (anchor_box[0] + anchor_box[2]) / 2 + reach * np.cos(angle)
            dy = (anchor_box[1] + anchor_box[3]) / 2 + reach * np.sin(angle)
        else:
            dx, dy = rng.uniform(low_x, high_x), rng.uniform(low_y, high_y)
        if not (low_x <= dx <= high_x and low_y <= dy <= high_y):
            continue
        candidate = (x_min + dx, y_min + dy, x_max + dx, y_max + dy)
        if all(_overlap_allowed(candidate, box) for box in boxes):
            return float(dx), float(dy)
    return None


def _radius(box: tuple[float, float, float, float]) -> float:
    """Half the mean side of a box: how far apart two cells' centres are when they just touch."""
    return (box[2] - box[0] + box[3] - box[1]) / 4


def _overlap_allowed(first: tuple[float, ...], second: tuple[float, ...]) -> bool:
    """True when two boxes overlap little enough that both cells stay mostly visible."""
    shared = float(box_geometry.intersection(first, second)[0, 0])
    if shared <= 0:
        return True
    smaller = float(box_geometry.area(np.array([first, second])).min())
    overlap = float(box_geometry.iou(first, second)[0, 0])
    return overlap <= MAX_OVERLAP_IOU and shared <= MAX_COVERED_FRACTION * smaller


def _write_cluster(folder: Path, number: int, pixels: np.ndarray, annotated: list[Cell]) -> None:
    """Write NNN.bmp and the NNN_cytMM.dat / NNN_nucMM.dat pair of every annotated cell."""
    stem = f"{number:03d}"
    Image.fromarray(pixels).save(folder / f"{stem}.bmp", format="BMP")
    for cell_number, cell in enumerate(annotated, start=1):
        _write_polygon(folder / f"{stem}_cyt{cell_number:02d}.dat", cell.cytoplasm)
        _write_polygon(folder / f"{stem}_nuc{cell_number:02d}.dat", cell.nucleus_outline())


def _write_polygon(path: Path, polygon: np.ndarray) -> None:
    """One vertex a line, `x,y` with two decimals, as SIPaKMeD's boundary files."""
    path.write_text("".join(f"{x:.2f},{y:.2f}\n" for x, y in polygon), encoding="ascii")
