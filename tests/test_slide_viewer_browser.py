"""The slide viewer in a real browser: Debian's Chromium, driven by Playwright, against
`cervical-tf serve --slides DIR --slide-results RESULTS` (no model).

The slide is two real CRIC fields as a pyramidal TIFF (tests/slide_viewer_files.py; synthetic
without the shared data), with predict's detections.geojson and a gallery written beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from server_process import running_server
from slide_viewer_files import SCORE, ViewerSlide, write_viewer_slide
from test_viewer_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS

from cervical_tf.export.model_card import SYNTHETIC_WARNING


@pytest.fixture
def viewer_slide(request: pytest.FixtureRequest, tmp_path: Path) -> ViewerSlide:
    """The slide from two real CRIC fields, or from a synthetic field when the shared data is absent."""
    try:
        cric: Path | None = request.getfixturevalue("shared_data") / "cric8"
    except pytest.skip.Exception:
        cric = None
    return write_viewer_slide(tmp_path, cric)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); the viewer test needs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def test_slide_viewer_draws_the_detections_and_flies_to_a_gallery_cell(
    viewer_slide: ViewerSlide, browser: Browser, tmp_path: Path
) -> None:
    arguments = ["--slides", str(viewer_slide.slides), "--slide-results", str(viewer_slide.results)]
    with running_server(arguments, tmp_path / "serve.log") as url:
        page, errors, requested = _open_viewer(browser, url + "/")  # no model: / opens the slide viewer

        boxes = len(viewer_slide.labels)
        assert page.locator("#overlay rect").count() == boxes
        assert page.inner_text("#shown-count") == str(boxes)
        assert page.input_value("#slide-select") == viewer_slide.slide.name
        assert page.inner_text("#slide-score") == f"{SCORE:.3f}"
        assert (
            page.inner_text("#model-warning") == f"The model behind these detections was {SYNTHETIC_WARNING}."
        )
        _assert_boxes_drawn_where_the_slide_shows_them(page, viewer_slide)

        # Each class's checkbox hides and shows its boxes; the legend counts them.
        first_class = sorted(set(viewer_slide.labels))[0]
        in_class = viewer_slide.labels.count(first_class)
        toggle = page.locator(f'#legend input[data-class="{first_class}"]')
        toggle.uncheck()
        assert page.inner_text("#shown-count") == str(boxes - in_class)
        assert page.locator("#overlay g[display=none] rect").count() == in_class
        toggle.check()
        assert page.inner_text("#shown-count") == str(boxes)

        # A gallery cell flies the view to its box.
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "slide_viewer_whole.png"))  # git-ignored, for people
        _assert_gallery_cell_flies_to_its_box(page, viewer_slide.gallery["cells"][0])

        page.wait_for_function("slideViewer.viewer.world.getItemAt(0).getFullyLoaded()", timeout=30_000)
        screenshot = ARTIFACTS / "slide_viewer.png"
        page.screenshot(path=str(screenshot))
        print(f"slide viewer screenshot: {screenshot}")
        page.close()

    assert errors == []
    outside = [address for address in requested if not address.startswith((url, "data:"))]
    assert outside == [], "the viewer must load nothing from outside the server (no CDN)"
    tiles = [address for address in requested if "/image_files/" in address]
    assert tiles and all("?v=" in address for address in tiles)  # cacheable: versioned by the file


def _assert_boxes_drawn_where_the_slide_shows_them(page: Page, viewer_slide: ViewerSlide) -> None:
    """The first and last boxes' SVG rectangles sit on the screen where OpenSeadragon puts their pixels."""
    for index in (0, len(viewer_slide.labels) - 1):
        xmin, ymin, xmax, ymax = (float(value) for value in viewer_slide.boxes[index])
        drawn = page.evaluate(
            "(index) => { const r = document.querySelectorAll('#overlay rect')[index]"
            ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }",
            index,
        )
        expected = page.evaluate(
            "([x0, y0, x1, y1]) => { const v = slideViewer.viewer; const item = v.world.getItemAt(0);"
            " const origin = v.element.getBoundingClientRect();"
            " const a = v.viewport.pixelFromPoint(item.imageToViewportCoordinates(x0, y0), true);"
            " const b = v.viewport.pixelFromPoint(item.imageToViewportCoordinates(x1, y1), true);"
            " return [a.x + origin.left, a.y + origin.top, b.x + origin.left, b.y + origin.top]; }",
            [xmin, ymin, xmax, ymax],
        )
        assert drawn == pytest.approx(expected, abs=2.5), (index, drawn, expected)
        assert drawn[2] - drawn[0] > 2  # visible on the whole-slide view


def test_slide_viewer_shows_what_predict_wrote_beside_a_served_model(
    browser: Browser, shared_data: Path, tmp_path: Path
) -> None:
    """The real chain: `predict` on an OME-TIFF of four CRIC fields (the stand-in blob model of
    tests/blob_export.py, so no training), then `serve --model ... --slides ... --slide-results`:
    the field viewer stays at /, and the slide viewer shows predict's boxes and gallery."""
    from blob_export import write_blob_export
    from slide_mosaic import MPP, build_mosaic, with_card

    from cervical_tf import cli

    slides = tmp_path / "slides"
    slides.mkdir()
    build_mosaic(slides)["generic"].unlink()  # one slide: the OME-TIFF, read through tifffile
    model = with_card(write_blob_export(tmp_path / "blob"), MPP, 384)
    results = tmp_path / "results"
    flags = ["--abnormal", "dark", "--gallery", "8"]
    assert cli.main(["predict", "--model", str(model), "--output", str(results), *flags, str(slides)]) == 0
    features = json.loads((results / "mosaic.ome" / "detections.geojson").read_text(encoding="utf-8"))
    gallery = json.loads((results / "mosaic.ome" / "gallery.json").read_text(encoding="utf-8"))
    report = json.loads((results / "mosaic.ome" / "slide_report.json").read_text(encoding="utf-8"))
    assert len(features["features"]) > 40 and len(gallery["cells"]) == 8

    arguments = ["--model", f"blob={model}", "--slides", str(slides), "--slide-results", str(results)]
    with running_server(arguments, tmp_path / "serve.log") as url:
        assert "/static/viewer.js" in httpx.get(url + "/", timeout=10).text  # the field viewer, as before
        page, errors, _ = _open_viewer(browser, url + "/slides.html")

        assert page.locator("#overlay rect").count() == len(features["features"])
        assert page.locator("#gallery button").count() == len(gallery["cells"])
        assert page.inner_text("#slide-score") == f"{report['score']:.3f}"
        _assert_gallery_cell_flies_to_its_box(page, gallery["cells"][0])
        page.wait_for_function("slideViewer.viewer.world.getItemAt(0).getFullyLoaded()", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "slide_viewer_predicted.png"))  # git-ignored, for people
        page.close()
    assert errors == []


def _open_viewer(browser: Browser, address: str) -> tuple[Page, list[str], list[str]]:
    """The page at `address` once the slide and its overlay are drawn; (page, console errors, URLs asked)."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    requested: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: requested.append(request.url))
    page.goto(address)
    page.wait_for_selector("body[data-state=ready]", timeout=30_000)
    page.wait_for_function("slideViewer.viewer.world.getItemAt(0).getFullyLoaded()", timeout=30_000)
    return page, errors, requested


def _assert_gallery_cell_flies_to_its_box(page: Page, cell: dict) -> None:
    """Clicking the cell's gallery button zooms the view in until it holds the cell's box."""
    whole = page.evaluate("slideViewer.visibleImageRect()")
    page.click(f'#gallery button[data-rank="{cell["rank"]}"]')
    page.wait_for_function(  # the 0.6 s flight: the current bounds reach the target
        "slideViewer.viewer.viewport.getBounds(true).equals(slideViewer.viewer.viewport.getBounds(false))",
        timeout=10_000,
    )
    x, y, width, height = page.evaluate("slideViewer.visibleImageRect()")
    xmin, ymin, xmax, ymax = cell["box"]
    assert x <= xmin and y <= ymin and x + width >= xmax and y + height >= ymax, (x, y, width, height)
    assert width < whole[2] / 3, "the view should zoom in on the cell"
    assert page.get_attribute(f'#gallery button[data-rank="{cell["rank"]}"]', "aria-current") == "true"
    assert page.locator("#overlay rect.focus").count() == 1
