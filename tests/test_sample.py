"""The synthetic SIPaKMeD sample: layout, determinism, annotation files and class appearance."""

from __future__ import annotations

import colorsys
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tfrecords_gen import sample
from tfrecords_gen.readers import sipakmed
from tfrecords_gen.records import ReaderInput
from tfrecords_gen.sample import CLASS_FOLDERS, SampleSpec, generate_sample
from tfrecords_gen.sample_cells import make_cell
from tfrecords_gen.sample_marker import SAMPLE_MARKER
from tfrecords_gen.validate import validate

SMALL = SampleSpec(images=20, seed=3, width=384, height=288)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small sample shared by the read-only tests (4 images per class)."""
    out_dir = tmp_path_factory.mktemp("sample") / "sipakmed"
    generate_sample(out_dir, SMALL, progress=False)
    return out_dir


def read_polygon(path: Path) -> np.ndarray:
    """Parse a SIPaKMeD boundary file strictly: every line `x,y` with two floats."""
    lines = path.read_text(encoding="ascii").splitlines()
    assert lines, f"{path} is empty"
    rows = []
    for line in lines:
        assert re.fullmatch(r"-?\d+\.\d+,-?\d+\.\d+", line), f"{path}: bad line {line!r}"
        rows.append([float(value) for value in line.split(",")])
    return np.array(rows)


def annotated_cells(folder: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, cytoplasm polygon, nucleus polygon) of every annotated cell in a class folder."""
    cells = []
    for cytoplasm_path in sorted(folder.glob("*_cyt*.dat")):
        stem, number = cytoplasm_path.stem.split("_cyt")
        nucleus_path = folder / f"{stem}_nuc{number}.dat"
        cells.append((folder / f"{stem}.bmp", read_polygon(cytoplasm_path), read_polygon(nucleus_path)))
    return cells


def mask_of(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def box_area(polygon: np.ndarray) -> float:
    width, height = polygon.max(axis=0) - polygon.min(axis=0)
    return float(width * height)


def cytoplasm_pixels(folder: Path) -> np.ndarray:
    """RGB of all pixels inside annotated cytoplasm polygons but outside their nuclei, (N, 3)."""
    pixels = []
    for image_path, cytoplasm, nucleus in annotated_cells(folder):
        image = np.asarray(Image.open(image_path))
        inside = mask_of(cytoplasm, image.shape[:2]) & ~mask_of(nucleus, image.shape[:2])
        pixels.append(image[inside])
    return np.concatenate(pixels).astype(np.float64)


def test_generate_sample_writes_sipakmed_layout(sample_dir: Path) -> None:
    assert sorted(p.name for p in sample_dir.iterdir()) == sorted([*CLASS_FOLDERS.values(), SAMPLE_MARKER])
    for folder_name in CLASS_FOLDERS.values():
        folder = sample_dir / folder_name
        images = sorted(p.name for p in folder.glob("*.bmp"))
        assert images == ["001.bmp", "002.bmp", "003.bmp", "004.bmp"]
        for image_name in images:
            with Image.open(folder / image_name) as image:
                assert (image.format, image.mode, image.size) == ("BMP", "RGB", (384, 288))
            assert int.from_bytes((folder / image_name).read_bytes()[28:30], "little") == 24  # bits/pixel
        cytoplasm = sorted(p.name.replace("_cyt", "_") for p in folder.glob("*_cyt*.dat"))
        nuclei = sorted(p.name.replace("_nuc", "_") for p in folder.glob("*_nuc*.dat"))
        assert cytoplasm == nuclei and cytoplasm
        assert all(re.fullmatch(r"\d{3}_\d{2}\.dat", name) for name in cytoplasm)
        assert {name[:3] for name in cytoplasm} == {name[:3] for name in images}
        assert len(list(folder.iterdir())) == len(images) + 2 * len(cytoplasm)


def test_generate_sample_reads_back_through_the_sipakmed_reader(sample_dir: Path) -> None:
    validated = validate(sipakmed.read(ReaderInput(input_path=sample_dir)), workers=1, progress=False)
    assert validated.problems == []
    assert len(validated.records) == SMALL.images
    for record in validated.records:
        folder = record.image_path.parent
        assert folder.name == CLASS_FOLDERS[record.boxes[0].label]
        assert {box.label for box in record.boxes} == {record.boxes[0].label}
        assert len(record.boxes) == len(list(folder.glob(f"{record.image_path.stem}_cyt*.dat")))


def test_generate_sample_summary_counts_the_files(tmp_path: Path) -> None:
    summary = generate_sample(tmp_path / "out", SampleSpec(images=5, width=256, height=256), progress=False)
    assert summary.images == 5 and summary.out_dir == tmp_path / "out"
    for label, folder in CLASS_FOLDERS.items():
        assert summary.cells[label] == len(list((tmp_path / "out" / folder).glob("*_cyt*.dat"))) >= 3
    assert summary.drawn_cells == sum(summary.cells.values())  # label_fraction 1: every cell annotated


def test_generate_sample_polygons_lie_inside_the_image_and_the_cell(sample_dir: Path) -> None:
    for folder_name in CLASS_FOLDERS.values():
        for _, cytoplasm, nucleus in annotated_cells(sample_dir / folder_name):
            assert 12 <= len(cytoplasm) <= 40
            assert (cytoplasm >= 0).all() and (cytoplasm <= [383, 287]).all()
            assert (nucleus.min(axis=0) >= cytoplasm.min(axis=0)).all()
            assert (nucleus.max(axis=0) <= cytoplasm.max(axis=0)).all()


@pytest.mark.parametrize("label", list(CLASS_FOLDERS))
def test_make_cell_gives_12_to_40_vertices_and_nuclei_inside_the_cytoplasm(label: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        cell = make_cell(label, 1.0, rng)
        assert 12 <= len(cell.cytoplasm) <= 40
        contour = cell.cytoplasm.astype(np.float32)
        for nucleus in (*cell.nuclei, cell.nucleus_outline()):
            assert all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in nucleus)


def test_generate_sample_is_deterministic_per_seed(tmp_path: Path) -> None:
    spec = SampleSpec(images=5, seed=11, width=256, height=256)
    generate_sample(tmp_path / "a", spec, progress=False)
    generate_sample(tmp_path / "b", spec, progress=False)
    generate_sample(tmp_path / "c", SampleSpec(images=5, seed=12, width=256, height=256), progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    first_image = Path(CLASS_FOLDERS["Parabasal"]) / "001.bmp"
    assert (tmp_path / "a" / first_image).read_bytes() != (tmp_path / "c" / first_image).read_bytes()


def test_generate_sample_images_do_not_depend_on_the_image_count(tmp_path: Path) -> None:
    generate_sample(tmp_path / "five", SampleSpec(images=5, width=256, height=256), progress=False)
    generate_sample(tmp_path / "seven", SampleSpec(images=7, width=256, height=256), progress=False)
    for folder in CLASS_FOLDERS.values():
        first = (tmp_path / "five" / folder / "001.bmp").read_bytes()
        assert first == (tmp_path / "seven" / folder / "001.bmp").read_bytes()


def test_generate_sample_label_fraction_leaves_cells_unannotated(tmp_path: Path) -> None:
    spec = SampleSpec(images=10, width=320, height=256, label_fraction=0.5, cells_per_image=(4, 6))
    summary = generate_sample(tmp_path / "out", spec, progress=False)
    annotated = sum(summary.cells.values())
    assert 10 <= annotated < summary.drawn_cells
    assert summary.drawn_cells - annotated >= 10 + 10  # unannotated own-class cells plus >= 1 other per image
    for label, folder in CLASS_FOLDERS.items():
        assert summary.cells[label] == len(list((tmp_path / "out" / folder).glob("*_cyt*.dat")))


def test_generate_sample_classes_differ_in_size(sample_dir: Path) -> None:
    mean_area = {
        label: np.mean([box_area(cyt) for _, cyt, _ in annotated_cells(sample_dir / folder)])
        for label, folder in CLASS_FOLDERS.items()
    }
    assert mean_area["Superficial-Intermediate"] > mean_area["Koilocytotic"] > mean_area["Parabasal"]
    assert mean_area["Metaplastic"] > mean_area["Parabasal"]
    assert min(mean_area, key=mean_area.get) == "Dyskeratotic"


def test_generate_sample_classes_differ_in_colour(sample_dir: Path) -> None:
    def mean_hue_degrees(label: str) -> float:
        red, green, blue = cytoplasm_pixels(sample_dir / CLASS_FOLDERS[label]).mean(axis=0) / 255
        return colorsys.rgb_to_hsv(red, green, blue)[0] * 360

    assert mean_hue_degrees("Dyskeratotic") < 45  # orange / red
    assert 150 < mean_hue_degrees("Parabasal") < 230  # blue-green
    assert 150 < mean_hue_degrees("Metaplastic") < 230
    parabasal = cytoplasm_pixels(sample_dir / CLASS_FOLDERS["Parabasal"]).mean()
    assert cytoplasm_pixels(sample_dir / CLASS_FOLDERS["Metaplastic"]).mean() < parabasal  # denser


def test_generate_sample_koilocytes_have_a_clear_perinuclear_halo(sample_dir: Path) -> None:
    def halo_contrast(label: str) -> float:
        """Brightness just around the nucleus minus the brightness of the whole cytoplasm."""
        differences = []
        for image_path, cytoplasm, nucleus in annotated_cells(sample_dir / CLASS_FOLDERS[label]):
            image = np.asarray(Image.open(image_path).convert("L"), dtype=np.float64)
            nucleus_mask = mask_of(nucleus, image.shape)
            grown = cv2.dilate(nucleus_mask.astype(np.uint8), np.ones((5, 5), np.uint8), iterations=1)
            ring = grown.astype(bool) & ~nucleus_mask
            cell = mask_of(cytoplasm, image.shape) & ~grown.astype(bool)
            differences.append(image[ring].mean() - image[cell].mean())
        return float(np.mean(differences))

    assert halo_contrast("Koilocytotic") > 10
    assert halo_contrast("Koilocytotic") > halo_contrast("Parabasal") + 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images": 0}, "images"),
        ({"label_fraction": 0.0}, "label_fraction"),
        ({"label_fraction": 1.5}, "label_fraction"),
        ({"width": 255}, "width"),
        ({"height": 100}, "height"),
        ({"cells_per_image": (5, 2)}, "cells_per_image"),
    ],
)
def test_sample_spec_rejects_bad_arguments(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SampleSpec(**changes)


def test_generate_sample_refuses_a_folder_holding_a_sample(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    (out_dir / CLASS_FOLDERS["Parabasal"]).mkdir(parents=True)
    (out_dir / CLASS_FOLDERS["Parabasal"] / "001.bmp").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="im_Parabasal"):
        generate_sample(out_dir, SampleSpec(images=1, width=256, height=256), progress=False)
    assert (out_dir / CLASS_FOLDERS["Parabasal"] / "001.bmp").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind


def test_generate_sample_accepts_an_empty_folder_and_leaves_no_temp_dir(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    (out_dir / CLASS_FOLDERS["Metaplastic"]).mkdir(parents=True)  # an empty class folder is fine
    generate_sample(out_dir, SampleSpec(images=5, width=256, height=256), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out_dir / CLASS_FOLDERS["Metaplastic"] / "001.bmp").is_file()


def test_generate_sample_interrupted_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    render_image = sample.render_image

    def interrupt_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render_image(*args, **kwargs)

    monkeypatch.setattr(sample, "render_image", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate_sample(tmp_path / "out", SampleSpec(images=5, width=256, height=256), progress=False)
    assert list(tmp_path.iterdir()) == []
