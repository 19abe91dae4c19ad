"""The web viewer in a real browser: Debian's Chromium, driven by Playwright, against `cervical-tf serve`.

The server runs as a subprocess on a fake export (tests/fake_export.py): it finds a dark square
as 'dark' (score 0.9) and a grey square as 'grey' (score 0.4), so at the viewer's default
threshold 0.50 one cell is shown and at 0.30 two. Playwright never downloads a browser here:
it launches /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_export import add_model_card, write_fake_export
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page, sync_playwright
from server_process import running_server

from cervical_tf.export.model_card import SYNTHETIC_WARNING
from tfrecords_gen.sample import SampleSpec, generate_sample

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # git-ignored; the last screenshot stays here for people to look at


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    """Debian's Chromium, or a skip outside CI when it is not installed (in CI it must run)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run should have installed Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); the viewer test needs it")
    return CHROMIUM


@pytest.fixture(scope="module")
def server_url(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cervical-tf serve --model fake=EXPORT --abnormal dark` on a free loopback port; its base URL.

    The same fake model is also served with a model card, as `synthetic` (trained on the synthetic
    sample) and `real` (trained on real data): `?model=NAME` opens the viewer on one of them."""
    folder = tmp_path_factory.mktemp("serve")
    export = write_fake_export(folder / "fake")
    # The fake model's grey and dark extents overlap: per-class NMS keeps both, so thresholds matter.
    arguments = ["--model", f"fake={export}", "--abnormal", "dark", "--no-agnostic-nms"]
    for name, synthetic_sample in (("synthetic", "all"), ("real", "none")):
        carded = add_model_card(shutil.copytree(export, folder / name), synthetic_sample)
        arguments += ["--model", f"{name}={carded}"]
    with running_server(arguments, folder / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=LAUNCH_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def viewer(browser: Browser, server_url: str) -> Iterator[Viewer]:
    """The viewer page, opened at the server's `/`, recording console errors and detect requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    viewer = Viewer(page)
    page.on("console", lambda message: viewer.on_console(message.type, message.text))
    page.on("pageerror", lambda error: viewer.console_errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: viewer.on_request(request.url))
    page.goto(server_url + "/")
    yield viewer
    context.close()


class Viewer:
    """The page plus what it logged: console errors and the /v1/detect requests it made."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.detect_requests = 0

    def on_console(self, kind: str, text: str) -> None:
        if kind == "error":
            self.console_errors.append(text)

    def on_request(self, url: str) -> None:
        if "/v1/detect" in url:
            self.detect_requests += 1

    def open(self, path: Path) -> None:
        """Pick `path` in the file input and wait until the viewer shows its detections."""
        self.page.set_input_files("#file-input", str(path))
        self.page.wait_for_function(
            "document.querySelector('#total-count').textContent !== ''", timeout=30_000
        )

    def set_threshold(self, value: str) -> None:
        self.page.eval_on_selector(
            "#threshold",
            "(slider, value) => { slider.value = value; "
            "slider.dispatchEvent(new Event('input', {bubbles: true})); }",
            value,
        )

    def total(self) -> int:
        text = self.page.inner_text("#total-count")
        assert text.isdigit(), f"#total-count should hold plain digits, got {text!r}"
        return int(text)

    def download(self, button: str) -> tuple[str, str]:
        """Click a download button; (suggested file name, file text)."""
        with self.page.expect_download() as download_info:
            self.page.click(button)
        download = download_info.value
        return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


@pytest.fixture
def squares_png(tmp_path: Path) -> Path:
    """White 600x400 with a dark square at x 100..199, y 120..219 and a grey one at x 380..479, y 150..249."""
    path = tmp_path / "squares.png"
    _squares_image().save(path)
    return path


def test_viewer_count_matches_the_api_and_the_threshold_filters_live(
    viewer: Viewer, squares_png: Path
) -> None:
    viewer.open(squares_png)

    api = _detect(viewer.page.url, squares_png, min_score=0.5)
    assert float(viewer.page.input_value("#threshold")) == 0.5
    assert viewer.page.inner_text("#threshold-value") == "0.50"
    assert viewer.total() == len(api["detections"]) == 1
    assert "dark" in viewer.page.inner_text("#counts")
    assert viewer.page.inner_text("#model-name") == api["model"] == "fake"

    viewer.set_threshold("0.30")

    assert viewer.page.inner_text("#threshold-value") == "0.30"
    assert viewer.total() == 2
    assert viewer.page.locator("#abnormal-list li").count() == 2
    assert viewer.detect_requests == 1, "moving the threshold must not ask the server again"
    assert viewer.console_errors == []


def test_viewer_on_a_generated_sample_field(viewer: Viewer, tmp_path: Path) -> None:
    """A field from `cervical-tf sample`: the viewer's counts equal the API's at two thresholds."""
    generate_sample(tmp_path / "sample", SampleSpec(images=5, width=512, height=384, seed=0), progress=False)
    fields = sorted((tmp_path / "sample").glob("im_*/*.bmp"))
    counts = {
        field: (
            len(_detect(viewer.page.url, field, 0.5)["detections"]),
            len(_detect(viewer.page.url, field, 0.3)["detections"]),
        )
        for field in fields
    }
    field = next(field for field, (high, low) in counts.items() if high != low)  # the slider must matter

    viewer.open(field)
    assert viewer.total() == counts[field][0]
    viewer.set_threshold("0.30")
    assert viewer.total() == counts[field][1]
    assert viewer.console_errors == []


def test_viewer_list_item_centres_its_cell(viewer: Viewer, squares_png: Path, tmp_path: Path) -> None:
    viewer.open(squares_png)
    viewer.set_threshold("0.30")
    zoom_before = viewer.page.inner_text("#zoom-value")

    first = viewer.page.locator("#abnormal-list li button").first
    assert "dark" in first.inner_text() and "abnormal" in first.inner_text()  # abnormal cells first
    first.focus()
    viewer.page.keyboard.press("Enter")  # list items work from the keyboard
    viewer.page.wait_for_timeout(400)  # the 250 ms zoom animation

    assert first.get_attribute("aria-current") == "true"
    assert viewer.page.inner_text("#zoom-value") != zoom_before
    assert viewer.console_errors == []
    viewer.page.click("#zoom-fit")  # the whole image, the selected cell still highlighted
    screenshot = tmp_path / "viewer.png"
    viewer.page.screenshot(path=str(screenshot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "viewer.png")
    print(f"viewer screenshot: {screenshot} (copied to {ARTIFACTS / 'viewer.png'})")


def test_viewer_downloads_the_cells_shown(viewer: Viewer, squares_png: Path) -> None:
    viewer.open(squares_png)  # threshold 0.50: only the dark square

    name, text = viewer.download("#download-json")
    document = json.loads(text)
    assert name == "squares_detections.json"
    assert document["image"] == "squares.png"
    assert [detection["class"] for detection in document["detections"]] == ["dark"]

    name, text = viewer.download("#download-csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert name == "squares_detections.csv"
    assert rows[0] == ["image", "class", "class_id", "score", "xmin", "ymin", "xmax", "ymax"]
    assert [row[:3] for row in rows[1:]] == [["squares.png", "dark", "2"]]
    assert [float(value) for value in rows[1][4:]] == pytest.approx([100, 120, 200, 220], abs=1)

    viewer.set_threshold("0.30")
    name, text = viewer.download("#download-geojson")
    collection = json.loads(text)
    assert name == "squares_detections.geojson"
    assert collection["type"] == "FeatureCollection"
    features = sorted(
        collection["features"], key=lambda feature: feature["properties"]["classification"]["name"]
    )
    assert [feature["properties"]["classification"]["name"] for feature in features] == ["dark", "grey"]
    for feature in features:
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon"
        assert len(ring) == 5 and ring[0] == ring[-1]
        assert feature["properties"]["objectType"] == "detection"
        assert len(feature["properties"]["classification"]["color"]) == 3
        assert 0 < feature["properties"]["measurements"]["score"] <= 1
    assert viewer.console_errors == []


def test_viewer_warns_that_a_synthetic_model_never_saw_a_real_cell(
    viewer: Viewer, squares_png: Path, server_url: str
) -> None:
    viewer.page.goto(server_url + "/?model=synthetic")
    banner = viewer.page.locator("#model-warning")
    banner.wait_for(state="visible", timeout=30_000)  # from the model's metadata, before any image
    assert banner.inner_text() == f"This model was {SYNTHETIC_WARNING}."
    assert banner.get_attribute("role") == "alert"
    assert "/data/sample: 8 train images, 40 boxes" in viewer.page.inner_text("#model-card")

    viewer.open(squares_png)

    assert banner.is_visible()
    assert viewer.page.inner_text("#model-name") == "synthetic"
    _, text = viewer.download("#download-json")
    assert json.loads(text)["model_card"]["warning"] == SYNTHETIC_WARNING
    _, text = viewer.download("#download-geojson")
    assert json.loads(text)["model_card"]["warning"] == SYNTHETIC_WARNING
    ARTIFACTS.mkdir(exist_ok=True)
    viewer.page.screenshot(path=str(ARTIFACTS / "viewer-synthetic.png"))  # for people to look at
    assert viewer.console_errors == []


@pytest.mark.parametrize(
    ("model", "summary"), [("real", "/data/cric: 8 train images"), ("fake", "unknown provenance")]
)
def test_viewer_shows_the_model_card_without_banner_for_other_models(
    viewer: Viewer, squares_png: Path, server_url: str, model: str, summary: str
) -> None:
    viewer.page.goto(server_url + f"/?model={model}")
    viewer.page.wait_for_function(
        "document.querySelector('#model-card').textContent.length > 1", timeout=30_000
    )
    assert summary in viewer.page.inner_text("#model-card")
    viewer.open(squares_png)
    assert summary in viewer.page.inner_text("#model-card")
    assert viewer.page.locator("#model-warning").is_hidden()
    assert viewer.console_errors == []


def test_viewer_shows_the_servers_error_for_a_file_that_is_no_image(viewer: Viewer, tmp_path: Path) -> None:
    not_an_image = tmp_path / "x.png"
    not_an_image.write_text("this is text, not a PNG\n", encoding="utf-8")
    answer = httpx.post(
        viewer.page.url.rstrip("/") + "/v1/detect",
        files={"image": ("x.png", not_an_image.read_bytes(), "image/png")},
        timeout=30,
    )
    assert 400 <= answer.status_code < 500
    message = answer.json()["error"]

    viewer.page.set_input_files("#file-input", str(not_an_image))
    viewer.page.wait_for_selector("#status.error", timeout=30_000)

    assert message in viewer.page.inner_text("#status")
    assert viewer.page.inner_text("#total-count") == ""
    # Chromium logs a fetch() answered 4xx as a console error: that one is expected here, no other.
    expected = f"the server responded with a status of {answer.status_code}"
    assert [error for error in viewer.console_errors if expected not in error] == []


def test_viewer_lists_the_cells_of_an_image_the_browser_cannot_display(
    viewer: Viewer, tmp_path: Path
) -> None:
    tiff = tmp_path / "squares.tif"
    _squares_image().save(tiff)

    viewer.open(tiff)

    assert viewer.total() == 1
    assert "cannot display" in viewer.page.inner_text("#status")
    assert viewer.page.locator("#abnormal-list li").count() == 1
    assert viewer.console_errors == []


def _squares_image() -> Image.Image:
    image = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 120, 199, 219), fill=(20, 20, 20))  # 'dark': mean < 60
    draw.rectangle((380, 150, 479, 249), fill=(90, 90, 90))  # 'grey': 60 <= mean < 120
    return image


def _detect(page_url: str, image: Path, min_score: float) -> dict:
    answer = httpx.post(
        page_url.rstrip("/") + "/v1/detect",
        params={"min_score": min_score},
        files={"image": (image.name, image.read_bytes())},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()
