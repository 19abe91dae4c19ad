"""Slide reading, planning, tissue, streaming and resuming: the parts of `cervical_tf.slides` that
need no model. OpenSlide's own fixtures in ../shared/data/wsi_formats, small pyramids in tmp."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import openslide
import pytest
from PIL import Image
from slide_files import pyramid, write_generic_tiff, write_ome_tiff

from cervical_tf.inference import tiling
from cervical_tf.slides.plan import plan_read, plan_tiles
from cervical_tf.slides.reader import PixelSize, SlideError, SlideReader, is_slide, open_slide
from cervical_tf.slides.stream import stream_tiles
from cervical_tf.slides.tiff_reader import TiffFileReader
from cervical_tf.slides.tile_log import TileLog
from cervical_tf.slides.tissue import tissue_mask


@pytest.fixture
def formats(shared_data: Path) -> Path:
    return shared_data / "wsi_formats"


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (700, 900, 3), dtype=np.uint8)


def test_open_slide_svs_fixture_dimensions_levels_mpp(formats: Path) -> None:
    with open_slide(formats / "small.svs") as slide:
        assert slide.format == "aperio"
        assert slide.dimensions == ((16, 16),)
        assert slide.downsamples == (1.0,)
        assert slide.pixel_size == PixelSize(0.499, 0.499, "openslide.mpp-x/y")


def test_open_slide_pyramidal_tiff_fixture_levels(formats: Path) -> None:
    with open_slide(formats / "boxes.tiff") as slide:
        assert slide.format == "generic-tiff"
        assert slide.dimensions == ((300, 250), (150, 125), (75, 62), (37, 31))
        assert slide.downsamples[:2] == (1.0, 2.0)
        assert slide.pixel_size is not None  # 72 dpi in the file: 352.8 µm, as OpenSlide reads it
        assert slide.pixel_size.x_um == pytest.approx(352.7778, abs=1e-3)


def test_read_region_matches_openslide_on_every_level(formats: Path) -> None:
    path = formats / "boxes.tiff"
    reference = openslide.OpenSlide(str(path))
    with open_slide(path) as slide:
        for level in range(slide.level_count):
            region = slide.read_region(20, 10, level, 40, 30)
            rgba = reference.read_region((20, 10), level, (40, 30))  # level 3 ends inside: transparent
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            expected = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            assert region.dtype == np.uint8 and region.shape == (30, 40, 3)
            np.testing.assert_allclose(region, expected, atol=1)  # 1: rounding of the blend
        outside = slide.read_region(280, 240, 0, 40, 30)  # past the right and bottom edges: glass
        np.testing.assert_array_equal(outside[15:, 25:], 255)


def test_unreadable_svs_opens_then_fails_with_file_and_reason(formats: Path) -> None:
    with open_slide(formats / "unreadable.svs") as slide, pytest.raises(SlideError) as error:
        slide.read_region(0, 0, 0, 16, 16)
    assert "unreadable.svs" in str(error.value) and "cannot read level 0" in str(error.value)


def test_unopenable_tiff_fails_with_file_and_reason(formats: Path) -> None:
    assert is_slide(formats / "unopenable.tiff")  # tiled: a slide, reported as one
    with pytest.raises(SlideError, match=r"unopenable\.tiff: OpenSlide cannot open.*compression"):
        open_slide(formats / "unopenable.tiff")


def test_open_slide_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match=r"gone\.svs: slide file not found"):
        open_slide(tmp_path / "gone.svs")


def test_ome_tiff_reader_regions_levels_and_pixel_size(tmp_path: Path, pixels: np.ndarray) -> None:
    path = write_ome_tiff(tmp_path / "field.ome.tiff", pixels, mpp_um=0.25)
    levels = pyramid(pixels, 3)

    with open_slide(path) as slide:
        assert isinstance(slide, TiffFileReader)
        assert slide.dimensions == ((900, 700), (450, 350), (225, 175))
        assert slide.downsamples == (1.0, 2.0, 4.0)
        assert slide.pixel_size == PixelSize(0.25, 0.25, "OME PhysicalSizeX/Y")  # written in nm
        np.testing.assert_array_equal(slide.read_region(100, 60, 0, 300, 200), pixels[60:260, 100:400])
        np.testing.assert_array_equal(slide.read_region(200, 120, 1, 300, 200), levels[1][60:260, 100:400])
        edge = slide.read_region(800, 600, 1, 300, 200)
        np.testing.assert_array_equal(edge[:50, :50], levels[1][300:, 400:])
        np.testing.assert_array_equal(edge[50:, 50:], 255)
        assert slide.thumbnail(100).shape == (78, 100, 3)


def test_generic_tiff_reads_as_openslide_pyramid_with_mpp(tmp_path: Path, pixels: np.ndarray) -> None:
    path = write_generic_tiff(tmp_path / "field.tiff", pixels, mpp_um=0.25)

    with open_slide(path) as slide:
        assert slide.format == "generic-tiff"
        assert slide.downsamples == (1.0, 2.0, 4.0)
        assert slide.pixel_size is not None and slide.pixel_size.x_um == pytest.approx(0.25)
        level_1 = pyramid(pixels, 2)[1]
        np.testing.assert_array_equal(slide.read_region(200, 120, 1, 300, 200), level_1[60:260, 100:400])
    with open_slide(path, mpp=0.5) as slide:
        assert slide.pixel_size == PixelSize(0.5, 0.5, "--mpp")


def test_is_slide_tells_slides_from_fields(tmp_path: Path, formats: Path, pixels: np.ndarray) -> None:
    strip_tiff = tmp_path / "field.tif"
    Image.fromarray(pixels).save(strip_tiff)  # Pillow writes strips: an ordinary image
    Image.fromarray(pixels).save(tmp_path / "field.png")

    assert is_slide(formats / "small.svs") and is_slide(formats / "boxes.tiff")
    assert not is_slide(strip_tiff) and not is_slide(tmp_path / "field.png")


class FakeSlide(SlideReader):
    def __init__(self, downsamples: tuple[float, ...], pixel_size: PixelSize | None) -> None:
        self.path = Path("fake.svs")
        self.dimensions = tuple((round(4000 / ds), round(3000 / ds)) for ds in downsamples)
        self.downsamples = downsamples
        self.pixel_size = pixel_size
        self.format = "fake"

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        raise NotImplementedError


@pytest.mark.parametrize(
    "model_um, level, scale",
    [(0.25, 0, 1.0), (1.0, 1, 1.0), (0.5, 0, 0.5), (2.0, 1, 0.5), (8.0, 2, 0.5), (0.125, 0, 2.0)],
    # the last: a 40x model on a 20x slide, level 0 enlarged twice (the most allowed)
)
def test_plan_read_picks_the_sharpest_level_it_can_shrink(model_um: float, level: int, scale: float) -> None:
    plan = plan_read(FakeSlide((1.0, 4.0, 16.0), PixelSize(0.25, 0.25, "test")), model_um)

    assert (plan.level, plan.scale) == (level, pytest.approx(scale))


def test_plan_read_refuses_a_slide_much_coarser_than_the_model() -> None:
    dpi_72 = PixelSize(352.78, 352.78, "openslide.mpp-x/y")  # a TIFF's default resolution, not a scan's

    with pytest.raises(SlideError, match=r"fake\.svs: .* coarser than the model's .*pass --mpp"):
        plan_read(FakeSlide((1.0, 4.0), dpi_72), 0.25)


def test_plan_read_without_pixel_sizes() -> None:
    plan = plan_read(FakeSlide((1.0, 4.0), None), None)
    assert (plan.level, plan.scale) == (0, 1.0) and "no pixel size" in plan.note
    with pytest.raises(SlideError, match=r"fake\.svs: the slide's metadata gives no pixel size.*--mpp"):
        plan_read(FakeSlide((1.0, 4.0), None), 0.5)


def test_plan_tiles_cores_partition_the_level() -> None:
    tiles = plan_tiles((1000, 700), scale=0.5, tile=256, overlap=64)  # 512 level px, overlap 128

    assert {(tile.x, tile.y) for tile in tiles} == {(x, y) for x in (0, 384, 488) for y in (0, 188)}
    assert all(tile.width == 512 and tile.height == 512 for tile in tiles)
    xs = sorted({tile.core_x for tile in tiles})
    assert xs == [(-np.inf, 448.0), (448.0, 692.0), (692.0, np.inf)]
    points = np.random.default_rng(1).uniform(0, 1000, (500, 2))
    boxes = np.concatenate([points, points], axis=1)
    owners = sum(tiling.centres_in(boxes, tile.core_x, tile.core_y).astype(int) for tile in tiles)
    np.testing.assert_array_equal(owners, 1)  # every point in exactly one core


def test_tissue_mask_finds_stained_cells_not_glass() -> None:
    thumbnail = np.full((100, 200, 3), 235, dtype=np.uint8)
    thumbnail[40:60, 120:150] = (180, 90, 140)  # a Pap-stained cell on glass
    mask = tissue_mask(thumbnail, (2000, 1000))

    assert mask.any_in(1200, 400, 1500, 600)
    assert not mask.any_in(0, 0, 800, 1000)
    assert 0.02 < mask.fraction < 0.1
    blank = tissue_mask(np.full((100, 200, 3), 240, dtype=np.uint8), (2000, 1000))
    assert blank.fraction == 0.0


def test_stream_tiles_in_order_with_a_bounded_queue() -> None:
    reading = threading.local()
    state = {"read": 0, "consumed": 0, "most_ahead": 0}

    def read(item: int) -> np.ndarray:
        reading.item = item
        state["read"] += 1
        state["most_ahead"] = max(state["most_ahead"], state["read"] - state["consumed"])
        return np.full((2, 2, 3), item, dtype=np.uint8)

    seen = []
    for item, tile in stream_tiles(range(40), read, depth=3):
        time.sleep(0.002)  # a slow model: the reader must wait for room
        seen.append((item, int(tile[0, 0, 0])))
        state["consumed"] += 1

    assert seen == [(item, item) for item in range(40)]
    assert state["most_ahead"] <= 3 + 2  # the queue, one being handed over, one being read


def test_stream_tiles_raises_a_read_error_in_the_consumer() -> None:
    def read(item: int) -> np.ndarray:
        if item == 3:
            raise SlideError("slide.svs: cannot read tile 3")
        return np.zeros((1, 1, 3), dtype=np.uint8)

    seen = []
    with pytest.raises(SlideError, match="tile 3"):
        for item, _ in stream_tiles(range(10), read):
            seen.append(item)
    assert seen == [0, 1, 2]
    assert not any(thread.name == "slide-tile-reader" for thread in threading.enumerate())


def _raw(count: int) -> tiling.RawDetections:
    return tiling.RawDetections(
        np.tile(np.array([[1.5, 2.25, 10.0, 20.0]], np.float32), (count, 1)),
        np.full(count, 0.75, np.float32),
        np.full(count, 2, np.int32),
        np.zeros(count, bool),
    )


def test_tile_log_resumes_and_drops_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "slide" / "tiles.jsonl"
    log = TileLog(path, {"tile": 512})
    log.append(0, _raw(2))
    log.append(5, _raw(0))
    log.close()
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"tile": 6, "boxes_px": [[1, 2')  # interrupted mid-line

    resumed = TileLog(path, {"tile": 512})
    resumed.close()
    assert sorted(resumed.done) == [0, 5] and not resumed.restarted
    np.testing.assert_array_equal(resumed.done[0].boxes_px, _raw(2).boxes_px)
    assert path.read_text(encoding="utf-8").count("\n") == 3  # the half line is gone

    other = TileLog(path, {"tile": 1024})
    other.close()
    assert other.done == {} and other.restarted
