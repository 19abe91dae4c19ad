"""Slide reports, galleries and the ranked table: the numbers agree with the detections, the ranking
follows the slide score, failed slides come last, and a resumed slide reports the same.

The stand-in model (tests/blob_export.py) calls its darkest blobs "dark"; `--abnormal dark` makes
them the abnormal class. A paler copy of the same slide has fewer and lower-scoring dark cells."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from blob_export import write_blob_export
from PIL import Image
from slide_files import halve, write_ome_tiff
from slide_mosaic import MPP, build_mosaic, with_card

from cervical_tf import cli
from cervical_tf.export.model_card import SYNTHETIC_WARNING, ModelCard
from cervical_tf.inference.detections import Detections
from cervical_tf.slides.batch import SlideFailure
from cervical_tf.slides.detect import SlideResult
from cervical_tf.slides.gallery import top_abnormal, write_gallery
from cervical_tf.slides.plan import ReadPlan
from cervical_tf.slides.ranking import ranked_rows
from cervical_tf.slides.reader import PixelSize, SlideReader
from cervical_tf.slides.report import TOP_CELLS, Triage, report_markdown, slide_report, slide_score

LABELS = {1: "grey", 2: "dark"}


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slides")
    mosaic = build_mosaic(folder)
    paler = 255 - np.round((255 - mosaic["pixels"].astype(np.float32)) * 0.8).astype(np.uint8)
    return {"mosaic": mosaic["ome"], "pale": write_ome_tiff(folder / "pale.ome.tiff", paler, MPP)}


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_card(write_blob_export(tmp_path_factory.mktemp("blob")), MPP, 384, synthetic_sample="all")


def predict(model: Path, output: Path, *arguments: str) -> int:
    return cli.main(["predict", "--model", str(model), "--output", str(output), *arguments])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_slide_reports_galleries_and_ranking_agree_with_the_detections_and_survive_a_resume(
    slides: dict[str, Path],
    blob_model: Path,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    output = tmp_path / "results"
    unreadable = shared_data / "wsi_formats" / "unreadable.svs"
    flags = ("--abnormal", "dark", "--gallery", "12")

    assert (
        predict(blob_model, output, *flags, str(slides["pale"]), str(unreadable), str(slides["mosaic"])) == 2
    )

    assert "slide score" in capsys.readouterr().out
    scores = {}
    for name in ("mosaic.ome", "pale.ome"):
        folder = output / name
        rows = read_csv(folder / "detections.csv")
        report = json.loads((folder / "slide_report.json").read_text(encoding="utf-8"))
        assert report["cells"] == len(rows) > 40
        assert report["cells_per_class"] == {
            label: sum(row["class"] == label for row in rows) for label in ("grey", "dark")
        }
        dark = sorted((row for row in rows if row["class"] == "dark"), key=lambda row: -float(row["score"]))
        assert report["abnormal_classes"] == ["dark"] and report["abnormal_cells"] == len(dark) > 0
        top = [float(row["score"]) for row in dark[:TOP_CELLS]]
        assert report["score"] == pytest.approx(sum(top) / TOP_CELLS, abs=1e-4)
        examined = report["examined"]
        assert 0 < examined["tissue_tiles"] < examined["tiles"]  # the glass on the right was skipped
        assert examined["area_mm2"] == pytest.approx(examined["area_px"] * MPP**2 / 1e6, rel=1e-3)
        assert examined["area_mm2"] < examined["slide_area_mm2"]
        assert report["model"]["warning"] == SYNTHETIC_WARNING
        markdown = (folder / "slide_report.md").read_text(encoding="utf-8")
        assert f"**{report['score']:.3f}**" in markdown and "top-10 abnormal cells" in markdown
        assert SYNTHETIC_WARNING in markdown

        gallery = json.loads((folder / "gallery.json").read_text(encoding="utf-8"))
        assert gallery["slide"] == f"{name}.tiff" and set(gallery) == {"slide", "cells"}
        cells = gallery["cells"]
        assert [cell["rank"] for cell in cells] == list(range(1, min(12, len(dark)) + 1))
        assert [cell["score"] for cell in cells] == sorted((cell["score"] for cell in cells), reverse=True)
        for cell, row in zip(cells, dark, strict=False):
            assert (cell["class"], cell["class_id"], cell["score"]) == ("dark", 2, float(row["score"]))
            assert cell["box"] == [float(row[key]) for key in ("xmin", "ymin", "xmax", "ymax")]
        picture = np.asarray(Image.open(folder / "gallery.png").convert("RGB"))
        for cell in cells:
            x, y, width, height = cell["mosaic"]
            assert min(x, y) >= 0 and x + width <= picture.shape[1] and y + height <= picture.shape[0]
            crop = picture[y : y + height, x : x + width]
            assert crop.std() > 10 and crop.mean() < 250  # cells, not glass
        scores[name] = report["score"]

    assert scores["mosaic.ome"] > scores["pale.ome"]
    ranked = read_csv(output / "slides_ranked.csv")
    assert [row["slide"] for row in ranked] == ["mosaic.ome.tiff", "pale.ome.tiff", "unreadable.svs"]
    assert [row["rank"] for row in ranked] == ["1", "2", ""]
    assert (
        float(ranked[0]["score"]) == scores["mosaic.ome"]
        and ranked[0]["report"] == "mosaic.ome/slide_report.md"
    )
    assert "cannot read level 0" in ranked[2]["failure"] and ranked[2]["score"] == ""
    table = (output / "slides_ranked.md").read_text(encoding="utf-8")
    assert table.index("mosaic.ome.tiff") < table.index("pale.ome.tiff") < table.index("unreadable.svs")

    folder = output / "mosaic.ome"
    before = {
        name: (folder / name).read_bytes() for name in ("slide_report.json", "gallery.json", "gallery.png")
    }
    log = folder / "tiles.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    log.write_text("".join(lines[:3]), encoding="utf-8")  # interrupted after 2 tiles
    assert predict(blob_model, output, *flags, str(slides["mosaic"])) == 0
    assert "2 done by an earlier run" in capsys.readouterr().out
    assert {name: (folder / name).read_bytes() for name in before} == before


def detections(scores: list[float], labels: list[str]) -> Detections:
    count = len(scores)
    boxes = np.array([[10.0 * index, 0.0, 10.0 * index + 8, 8.0] for index in range(count)], dtype=np.float32)
    class_ids = np.array([2 if label == "dark" else 1 for label in labels], dtype=np.int32)
    return Detections(
        "/slides/a.svs",
        1000,
        800,
        boxes.reshape(-1, 4),
        np.array(scores, np.float32),
        class_ids,
        tuple(labels),
    )


def test_slide_score_is_the_top_ten_abnormal_scores_over_ten_and_none_without_abnormal_classes() -> None:
    found = detections([0.99, 0.9, 0.8, 0.7], ["grey", "dark", "dark", "grey"])
    assert slide_score(found, frozenset({"dark"})) == (pytest.approx(0.17), [0.9, 0.8])
    many = detections([0.9] * 15, ["dark"] * 15)
    assert slide_score(many, frozenset({"dark"}))[0] == pytest.approx(0.9)
    assert slide_score(found, frozenset()) == (None, [])


def test_report_without_pixel_size_gives_pixels_and_without_abnormal_classes_no_score(tmp_path: Path) -> None:
    result = SlideResult(
        detections([0.9, 0.8], ["dark", "grey"]),
        ReadPlan(0, 1.0, 1.0, "level 0"),
        512,
        6,
        4,
        0,
        0.5,
        2e5,
        None,
    )
    triage = Triage(frozenset(), "no abnormal classes: name them with --abnormal NAME,...")
    report = slide_report(result, LABELS, triage, 0.5, ModelCard({}, tmp_path / "model_card.json"))
    assert (report["score"], report["abnormal_cells"], report["cells"]) == (None, 0, 2)
    assert report["examined"]["area_mm2"] is None and report["pixel_size_um"] is None
    assert "2e+05 px² (pixel size unknown)" in report_markdown(report)
    assert report["model"]["summary"].startswith("unknown provenance")

    sized = dataclasses.replace(result, pixel_size=PixelSize(0.5, 0.5, "--mpp"))
    report = slide_report(sized, LABELS, Triage(frozenset({"dark"}), "given"), 0.5, ModelCard({}, tmp_path))
    assert report["examined"]["area_mm2"] == pytest.approx(0.05) and report["score"] == pytest.approx(0.09)


def test_ranking_orders_by_score_then_abnormal_cells_and_puts_failures_last() -> None:
    def report(slide: str, score: float | None, abnormal: int) -> tuple[dict, str]:
        examined = {"tissue_tiles": 3, "area_mm2": None, "area_px": 100}
        return {
            "slide": slide,
            "score": score,
            "abnormal_cells": abnormal,
            "cells": 9,
            "examined": examined,
        }, slide

    reports = [report("c", 0.2, 5), report("none", None, 0), report("a", 0.8, 1), report("b", 0.2, 7)]
    rows = ranked_rows(reports, [SlideFailure(Path("/x/broken.svs"), "OpenSlide cannot open this slide")])
    assert [row["slide"] for row in rows] == ["a", "b", "c", "none", "broken.svs"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, ""]
    assert rows[-1]["failure"] == "OpenSlide cannot open this slide" and rows[3]["score"] == ""


class PyramidReader(SlideReader):
    """A two-level slide in memory (level 1 = level 0 halved) that records the regions read."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.path = Path("memory.tiff")
        self.levels = [pixels, halve(pixels)]
        self.dimensions = tuple((level.shape[1], level.shape[0]) for level in self.levels)
        self.downsamples = (1.0, 2.0)
        self.pixel_size = None
        self.format = "memory"
        self.reads: list[tuple[int, int, int, int, int]] = []

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        self.reads.append((x, y, level, width, height))
        left, top = round(x / self.downsamples[level]), round(y / self.downsamples[level])
        return self.levels[level][top : top + height, left : left + width]


def test_gallery_crops_come_from_the_level_read_and_sit_where_gallery_json_says(tmp_path: Path) -> None:
    pixels = np.full((800, 1000, 3), 255, dtype=np.uint8)
    pixels[200:264, 300:364] = (200, 0, 0)  # a red cell
    pixels[500:564, 880:944] = (0, 0, 200)  # a blue one, nearer the right edge
    found = Detections(
        "/slides/two.tiff",
        1000,
        800,
        np.array([[880, 500, 944, 564], [300, 200, 364, 264], [10, 10, 40, 40]], dtype=np.float32),
        np.array([0.9, 0.8, 0.7], dtype=np.float32),
        np.array([2, 2, 1], dtype=np.int32),
        ("dark", "dark", "grey"),
    )
    reader = PyramidReader(pixels)
    indices = top_abnormal(found, frozenset({"dark"}), 5)

    cells = write_gallery(tmp_path, reader, ReadPlan(1, 2.0, 1.0, "level 1"), found, indices, "none", None)

    assert list(indices) == [0, 1] and {read[2] for read in reader.reads} == {1}
    assert json.loads((tmp_path / "gallery.json").read_text(encoding="utf-8")) == {
        "slide": "two.tiff",
        "cells": cells,
    }
    picture = np.asarray(Image.open(tmp_path / "gallery.png").convert("RGB")).astype(int)
    for cell, colour in zip(cells, [(0, 0, 200), (200, 0, 0)], strict=True):
        x, y, width, height = cell["mosaic"]
        assert np.abs(picture[y + height // 2, x + width // 2] - colour).max() < 30  # the cell in the middle
    assert [cell["box"] for cell in cells] == [[880.0, 500.0, 944.0, 564.0], [300.0, 200.0, 364.0, 264.0]]
