"""Whole-slide prediction: megapixels per second and peak memory against slide size.

Run: .venv/bin/python bench/slide_throughput.py (--stand-in | --model EXPORT) [--sizes 0.25 1 4]
     [--tissue 0.3] [--mpp 0.25] [--tile T] [--work DIR [--keep]] [--data-root ../shared/data]

For each size (gigapixels of level 0) a synthetic slide is written with tifffile, tile by tile (never
a whole level in memory): a pyramidal generic tiled TIFF (BigTIFF, deflate, 256 px tiles, one page
per level halving down to about 1000 px, pixel size --mpp in the resolution tags, so OpenSlide
reads it), twice as wide as high. It is pale glass with tissue blocks of 2048 x 2048 level-0 px
exactly --tissue of the blocks, chosen at random: so the tissue share, and the tiles the tissue
mask keeps, are the same at every size. A tissue block is 4 x 4 patches of 512 px cut from the
real CRIC fields (../shared/data/cric8/images; cell-like dark blobs on a pale background when they
are absent). A patch's tiles are encoded once and written as they are, so a 4-gigapixel slide takes
minutes, not hours. Free disk space is checked first; slides are deleted after their run unless
--keep (with --work DIR and --keep, a slide of the same spec already there is reused).

Each slide is then run by `cervical-tf predict --model EXPORT --output OUT SLIDE` in a fresh
process: wall time; megapixels per second of level 0 (the slide's area) and of tissue (the area
examined, slide_report.json's tissue tiles' cores); tissue tiles per second; the peak resident
memory of that process (ru_maxrss from os.wait4 on it: the kernel's high-water mark, exact). psutil
samples the process's RSS every 0.25 s beside the tiles done (tiles.jsonl's lines), so the table of
phases shows where the time goes (start: Python, TensorFlow, the model, thumbnail and tissue mask;
tiles: the tile loop; end: seam merge and the outputs) and whether memory grows during the loop.

--stand-in runs tests/blob_export.py's pixel-driven model (dark blobs: the slide pipeline without
the network's cost) with a model card trained at --mpp and an input of --tile (default 512, the
demo's Lite0 input), so both models read level 0 at scale 1 in the same tiles. The CPU is printed
first; the ratios largest/smallest of MP/s and peak RSS close the output (flat is about 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from agnostic_nms import cpu_description

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(os.path.normpath(Path(sys.executable).with_name("cervical-tf")))  # beside the venv's python
TIFF_TILE = 256  # px, the TIFF's tiles
PATCH = 512  # level-0 px, the unit of the slide's layout
BLOCK = 4  # patches per side of a tissue block (2048 level-0 px)
GLASS = (236, 233, 239)  # pale glass, saturation ~0.03 (under tissue.MIN_SATURATION)
SMALLEST_LEVEL = 1000  # px, the pyramid stops at the first level whose longer side is below this
SAMPLE_S = 0.25


@dataclass(frozen=True)
class SlideSpec:
    gigapixels: float
    width: int
    height: int
    tissue: float
    mpp: float
    source: str
    seed: int

    @property
    def name(self) -> str:
        return f"synthetic_{self.gigapixels:g}gp.tiff"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="an export (`cervical-tf export`)")
    model.add_argument("--stand-in", action="store_true", help="tests/blob_export.py's model")
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 4.0], help="gigapixels")
    parser.add_argument("--tissue", type=float, default=0.3, help="share of the slide's blocks with tissue")
    parser.add_argument("--mpp", type=float, default=0.25, help="µm per level-0 px of the slides")
    parser.add_argument("--tile", type=int, help="predict --tile (default: the model card's; stand-in 512)")
    parser.add_argument("--work", type=Path, help="folder for slides and results (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the slides and results")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"CPU: {cpu_description()}; {os.cpu_count()} logical cores", flush=True)
    temporary = args.work is None
    work = Path(tempfile.mkdtemp(prefix="slide_throughput_")) if temporary else args.work
    work.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []  # removed at the end unless --keep (a --work folder itself stays)
    try:
        patches, source = tissue_patches(args.data_root, args.seed)
        export = args.model
        if args.stand_in:
            export = build_stand_in(work / "stand_in_export", args.mpp, args.tile or 512)
            made.append(export)
        kept_made = len(made)
        model_text = "stand-in (tests/blob_export.py)" if args.stand_in else str(args.model)
        print(f"model: {model_text}; tissue: {source}", flush=True)
        rows = []
        for gigapixels in sorted(args.sizes):
            spec = slide_spec(gigapixels, args.tissue, args.mpp, source, args.seed)
            slide = work / spec.name
            output = work / f"out_{gigapixels:g}gp"
            log = work / f"predict_{gigapixels:g}gp.log"
            made += [slide, slide.with_suffix(".spec.json"), output, log]
            generated = ensure_slide(slide, spec, patches)
            shutil.rmtree(output, ignore_errors=True)  # a fresh run, never resumed
            command = [str(CLI), "predict", "--model", str(export), "--output", str(output), str(slide)]
            if args.tile and not args.stand_in:
                command[2:2] = ["--tile", str(args.tile)]
            print(f"$ {' '.join(command)}", flush=True)
            run = measure(command, output / slide.stem / "tiles.jsonl", log)
            report = json.loads((output / slide.stem / "slide_report.json").read_text(encoding="utf-8"))
            rows.append(row(spec, generated, run, report))
            print(describe(rows[-1]), flush=True)
            if not args.keep:  # free the disk before the next, larger slide
                remove(made[kept_made:])
                del made[kept_made:]
        print_tables(rows, model_text)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            remove([work] if temporary else made)
    return 0


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# --- the slides ------------------------------------------------------------------------------------


def slide_spec(gigapixels: float, tissue: float, mpp: float, source: str, seed: int) -> SlideSpec:
    """Twice as wide as high, sides in whole patches (so every level up to the 9th halves exactly)."""
    height = max(1, round(math.sqrt(gigapixels * 1e9 / 2) / PATCH)) * PATCH
    return SlideSpec(gigapixels, 2 * height, height, tissue, mpp, source, seed)


def tissue_patches(data_root: Path, seed: int) -> tuple[np.ndarray, str]:
    """uint8 [K + 1, PATCH, PATCH, 3]: glass (index 0), then the tissue patches; and where they come from."""
    from PIL import Image

    images = sorted((data_root / "cric8" / "images").glob("*.png"))
    patches = []
    for path in images:  # 6 overlapping patches per 1376 x 1020 field: 3 across, 2 down
        field = np.asarray(Image.open(path).convert("RGB"))
        height, width = field.shape[0] - PATCH, field.shape[1] - PATCH
        if height >= 0 and width >= 0:
            for y in sorted({0, height}):
                for x in sorted({0, width // 2, width}):
                    patches.append(field[y : y + PATCH, x : x + PATCH])
    if patches:
        source = f"{len(patches)} patches of {PATCH} px from {len(images)} CRIC fields in {data_root}/cric8"
    else:
        patches = [blob_patch(np.random.default_rng(seed + index)) for index in range(16)]
        source = f"16 synthetic patches of dark blobs ({data_root}/cric8 absent)"
    return np.stack([glass_patch(), *patches]), source


def glass_patch() -> np.ndarray:
    return np.broadcast_to(np.array(GLASS, dtype=np.uint8), (PATCH, PATCH, 3)).copy()


def blob_patch(rng: np.random.Generator) -> np.ndarray:
    """Pap-like cells on a pale pink background: pale cytoplasm discs, each with a dark purple nucleus."""
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    pixels = np.empty((PATCH, PATCH, 3), dtype=np.float32)
    pixels[:] = (225, 205, 215)
    for _ in range(int(rng.integers(6, 12))):
        cy, cx = rng.uniform(0, PATCH, 2)
        radius = rng.uniform(25, 45)
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = rng.choice([(170, 200, 215), (215, 160, 180)])
        nucleus = rng.uniform(6, 12)
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < nucleus**2] = (70, 40, 110)
    pixels += rng.normal(0, 4, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def layout(spec: SlideSpec, count: int) -> np.ndarray:
    """int32 [rows, cols] patch index per 512-px patch of level 0: 0 glass, else a tissue patch.

    Exactly round(tissue x blocks) of the 4 x 4-patch blocks are tissue, chosen at random."""
    rng = np.random.default_rng(spec.seed)
    rows, cols = spec.height // PATCH, spec.width // PATCH
    block_rows, block_cols = -(-rows // BLOCK), -(-cols // BLOCK)
    blocks = np.zeros(block_rows * block_cols, dtype=bool)
    blocks[rng.choice(blocks.size, round(spec.tissue * blocks.size), replace=False)] = True
    tissue = np.repeat(np.repeat(blocks.reshape(block_rows, block_cols), BLOCK, 0), BLOCK, 1)[:rows, :cols]
    return np.where(tissue, rng.integers(1, count, (rows, cols)), 0).astype(np.int32)


def halve(pixels: np.ndarray) -> np.ndarray:
    """[..., h/2, w/2, 3]: the rounded mean of each 2 x 2 block (as tests/slide_files.py)."""
    *lead, height, width, channels = pixels.shape
    blocks = pixels.astype(np.uint16).reshape(*lead, height // 2, 2, width // 2, 2, channels)
    return ((blocks.sum(axis=(-4, -2)) + 2) // 4).astype(np.uint8)


def level_count(spec: SlideSpec) -> int:
    """Levels halving down to the first whose longer side is under 2 x SMALLEST_LEVEL (at most 10,
    a patch of 1 px)."""
    levels = 1
    while max(spec.width, spec.height) >> (levels - 1) >= 2 * SMALLEST_LEVEL and PATCH >> levels >= 1:
        levels += 1
    return levels


class TileSource:
    """The encoded TIFF tiles of each level, made from the patches' pyramids and the layout; tiles
    inside one patch (levels 0 and 1) are encoded once per (level, patch, offset)."""

    def __init__(self, patches: np.ndarray, grid: np.ndarray, levels: int) -> None:
        self.grid = grid
        self.pyramid = [patches]
        for _ in range(1, levels):
            self.pyramid.append(halve(self.pyramid[-1]))
        self.cache: dict[tuple, bytes] = {}

    def tiles(self, level: int, width: int, height: int):
        for row in range(-(-height // TIFF_TILE)):
            for col in range(-(-width // TIFF_TILE)):
                yield self.tile(level, row, col)

    def tile(self, level: int, row: int, col: int) -> bytes:
        side = PATCH >> level
        y0, x0 = row * TIFF_TILE, col * TIFF_TILE
        rows = slice(y0 // side, -(-(y0 + TIFF_TILE) // side))
        cols = slice(x0 // side, -(-(x0 + TIFF_TILE) // side))
        ids = self.grid[rows, cols]
        want = (rows.stop - rows.start, cols.stop - cols.start)
        if ids.shape != want:  # beyond the slide's edge: glass (cropped away by readers)
            ids = np.pad(ids, ((0, want[0] - ids.shape[0]), (0, want[1] - ids.shape[1])))
        offset = (y0 - rows.start * side, x0 - cols.start * side)
        key = (
            (level, int(ids[0, 0]), *offset) if ids.size == 1 else (level, "glass") if not ids.any() else None
        )
        if key is not None and key in self.cache:
            return self.cache[key]
        patches = self.pyramid[level][ids]  # [rows, cols, side, side, 3]
        mosaic = patches.transpose(0, 2, 1, 3, 4).reshape(want[0] * side, want[1] * side, 3)
        pixels = np.ascontiguousarray(
            mosaic[offset[0] : offset[0] + TIFF_TILE, offset[1] : offset[1] + TIFF_TILE]
        )
        encoded = zlib.compress(pixels.tobytes(), 6)
        if key is not None:
            self.cache[key] = encoded
        return encoded


def ensure_slide(path: Path, spec: SlideSpec, patches: np.ndarray) -> float | None:
    """Write the slide (seconds taken), or reuse one of the same spec (None)."""
    marker = path.with_suffix(".spec.json")
    wanted = json.dumps(spec.__dict__ | {"patches": len(patches)}, sort_keys=True)
    if path.exists() and marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        print(f"reusing {path}", flush=True)
        return None
    grid = layout(spec, len(patches))
    levels = level_count(spec)
    source = TileSource(patches, grid, levels)
    check_disk(path.parent, spec, patches, float((grid > 0).mean()))
    import tifffile

    started = time.perf_counter()
    per_cm = 10_000 / spec.mpp
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        for level in range(levels):
            width, height = spec.width >> level, spec.height >> level
            tiff.write(
                source.tiles(level, width, height),
                shape=(height, width, 3),
                dtype=np.uint8,
                tile=(TIFF_TILE, TIFF_TILE),
                compression="zlib",
                photometric="rgb",
                subfiletype=1 if level else 0,  # reduced-resolution pages: OpenSlide's levels
                resolution=(per_cm / 2**level, per_cm / 2**level),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    seconds = time.perf_counter() - started
    marker.write_text(wanted, encoding="utf-8")
    print(
        f"wrote {path.name}: {spec.width} x {spec.height} px ({spec.megapixels / 1000:.3f} GP), "
        f"{levels} levels, tissue blocks {100 * (grid > 0).mean():.1f}% of the slide, "
        f"{path.stat().st_size / 1e9:.2f} GB in {seconds:.0f} s",
        flush=True,
    )
    return seconds


def check_disk(folder: Path, spec: SlideSpec, patches: np.ndarray, share: float) -> None:
    """Refuse to start a slide whose estimated size (its encoded level-0 tiles, plus a third for
    the pyramid) is more than half the free space."""

    def encoded(patch: np.ndarray) -> int:
        return len(zlib.compress(np.ascontiguousarray(patch[:TIFF_TILE, :TIFF_TILE]).tobytes(), 6))

    tissue_tile = float(np.mean([encoded(patch) for patch in patches[1:9]]))
    tiles = (spec.width // TIFF_TILE) * (spec.height // TIFF_TILE)
    estimate = tiles * (share * tissue_tile + (1 - share) * encoded(patches[0])) * 4 / 3
    free = shutil.disk_usage(folder).free
    if 2 * estimate > free:
        raise SystemExit(f"{folder}: {free / 1e9:.1f} GB free, the slide needs about {estimate / 1e9:.1f} GB")


# --- the runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float
    samples: list[tuple[float, float, int]]  # (s since start, RSS MB, tiles done)


def measure(command: list[str], tile_log: Path, log: Path) -> Run:
    """Run `command`, sampling its RSS and tile_log's finished tiles; ru_maxrss from os.wait4."""
    import psutil

    samples: list[tuple[float, float, int]] = []
    done, seen = 0, 0
    with log.open("wb") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        watched = psutil.Process(process.pid)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if tile_log.exists():
                with tile_log.open("rb") as lines:
                    lines.seek(seen)
                    chunk = lines.read()
                seen += len(chunk)
                done += chunk.count(b"\n")
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended since wait4
                rss = watched.memory_info().rss / 2**20
                samples.append((time.perf_counter() - started, rss, max(done - 1, 0)))
            time.sleep(SAMPLE_S)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"predict failed ({process.returncode}):\n{tail}")
    return Run(seconds, usage.ru_maxrss / 1024, samples)


def row(spec: SlideSpec, generated: float | None, run: Run, report: dict) -> dict:
    examined = report["examined"]
    tissue_tiles = examined["tissue_tiles"]
    looping = [(t, rss, n) for t, rss, n in run.samples if n > 0]
    first = looping[0] if looping else (run.seconds, 0.0, 0)
    last = next((s for s in looping if s[2] >= tissue_tiles), looping[-1] if looping else first)
    loop_s = max(last[0] - first[0], 1e-9)

    def rss_at(share: float) -> float:
        wanted = max(1, math.ceil(share * tissue_tiles))
        return next((rss for _, rss, n in looping if n >= wanted), float("nan"))

    return {
        "gp": spec.megapixels / 1000,
        "size": f"{spec.width} x {spec.height}",
        "tiles": examined["tiles"],
        "tissue_tiles": tissue_tiles,
        "tissue_fraction": examined["tissue_fraction"],
        "cells": report["cells"],
        "seconds": run.seconds,
        "tiles_s": tissue_tiles / run.seconds,
        "mp_s": spec.megapixels / run.seconds,
        "tissue_mp_s": examined["area_px"] / 1e6 / run.seconds,
        "rss": run.peak_rss_mb,
        "start_s": first[0],
        "loop_s": loop_s,
        "end_s": run.seconds - last[0],
        "loop_tiles_s": (last[2] - first[2]) / loop_s,
        "rss_10": rss_at(0.1),
        "rss_50": rss_at(0.5),
        "rss_100": rss_at(1.0),
        "sampled_max": max((rss for _, rss, _ in run.samples), default=float("nan")),
        "generated_s": generated,
        "read": report["read"]["note"],
        "tile_px": report["read"]["tile_px"],
    }


def describe(r: dict) -> str:
    return (
        f"  {r['gp']:.3f} GP: {r['tissue_tiles']} of {r['tiles']} tiles of {r['tile_px']} px "
        f"(tissue {100 * r['tissue_fraction']:.1f}%), {r['cells']} cells, {r['seconds']:.1f} s, "
        f"peak RSS {r['rss']:.0f} MB; {r['read']}"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def print_tables(rows: list[dict], model_text: str) -> None:
    print(f"\nmodel: {model_text}; read: {rows[0]['read']}; tiles of {rows[0]['tile_px']} px\n")
    header = ["size (GP)", "level 0 px", "tiles", "tissue tiles", "cells", "seconds", "tiles/s"]
    header += ["level-0 MP/s", "tissue MP/s", "peak RSS MB"]
    print(
        table(
            header,
            [
                [
                    f"{r['gp']:.3f}",
                    r["size"],
                    str(r["tiles"]),
                    f"{r['tissue_tiles']} ({100 * r['tissue_tiles'] / r['tiles']:.0f}%)",
                    str(r["cells"]),
                    f"{r['seconds']:.1f}",
                    f"{r['tiles_s']:.2f}",
                    f"{r['mp_s']:.2f}",
                    f"{r['tissue_mp_s']:.2f}",
                    f"{r['rss']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    print(
        "\nPhases, from the 0.25 s samples (start: until the first tile is logged; tiles: the tile loop; "
        "end: seam merge and outputs), and the RSS when 10%, 50% and 100% of the tissue tiles were done:\n"
    )
    header = ["size (GP)", "start s", "tiles s", "end s", "loop tiles/s", "RSS 10% MB", "RSS 50% MB"]
    header += ["RSS 100% MB", "sampled max MB"]
    print(
        table(
            header,
            [
                [f"{r['gp']:.3f}", f"{r['start_s']:.1f}", f"{r['loop_s']:.1f}", f"{r['end_s']:.1f}"]
                + [f"{r[key]:.2f}" if key == "loop_tiles_s" else f"{r[key]:.0f}" for key in PHASE_KEYS]
                for r in rows
            ],
        )
    )
    if len(rows) > 1:
        small, large = rows[0], rows[-1]

        def ratio(key: str) -> str:
            return f"{large[key] / small[key]:.2f}"

        print(
            f"\nlargest/smallest ({large['gp']:.3f} / {small['gp']:.3f} GP): level-0 MP/s {ratio('mp_s')}, "
            f"tissue MP/s {ratio('tissue_mp_s')}, loop tiles/s {ratio('loop_tiles_s')}, "
            f"peak RSS {ratio('rss')}"
        )


PHASE_KEYS = ("loop_tiles_s", "rss_10", "rss_50", "rss_100", "sampled_max")


def build_stand_in(export: Path, mpp: float, input_side: int) -> Path:
    """tests/blob_export.py's model with a card: trained at `mpp`, input `input_side` px (in a child
    process, so this one never loads TensorFlow)."""
    if (export / "saved_model").exists():
        return export
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'tests');"
        "from blob_export import write_blob_export; from slide_mosaic import with_card;"
        f"e = Path({str(export)!r}); e.mkdir(parents=True, exist_ok=True);"
        f"with_card(write_blob_export(e), {mpp!r}, {input_side!r})"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return export


if __name__ == "__main__":
    sys.exit(main())
