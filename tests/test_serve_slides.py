"""`serve --slides DIR`'s HTTP endpoints: the listing, refusals of every path out of DIR or RESULTS,
the Deep Zoom descriptor and tiles (OpenSlide's generic TIFF and tifffile's OME-TIFF), and the
results passed through as predict wrote them. The app runs in-process with no model."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from slide_files import write_generic_tiff, write_ome_tiff
from slide_viewer_files import SCORE, ViewerSlide, write_viewer_slide

from cervical_tf.cli import main
from cervical_tf.serve.app import create_app
from cervical_tf.serve.limits import ServeLimits
from cervical_tf.serve.slide_folder import SlideFolder
from cervical_tf.slides.deepzoom import OVERLAP, TILE_SIZE

DZI = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.fixture(scope="module")
def viewer_slide(tmp_path_factory: pytest.TempPathFactory) -> ViewerSlide:
    """A synthetic slide and its results, plus the things DIR must never serve: a slide outside DIR
    reached by a symlink, a slide in a subfolder, a text file, a hidden file; and in RESULTS a
    gallery.json that is a symlink to a file outside RESULTS."""
    folder = tmp_path_factory.mktemp("slides")
    made = write_viewer_slide(folder, None)
    rng = np.random.default_rng(0)
    outside = folder / "outside"
    outside.mkdir()
    secret = write_generic_tiff(outside / "secret.tif", rng.integers(0, 255, (300, 300, 3), np.uint8), 0.5, 2)
    (outside / "secret.json").write_text('{"secret": true}\n', encoding="utf-8")
    (made.slides / "link.tif").symlink_to(secret)
    (made.slides / "sub").mkdir()
    write_generic_tiff(
        made.slides / "sub" / "inner.tif", rng.integers(0, 255, (300, 300, 3), np.uint8), 0.5, 2
    )
    (made.slides / "notes.txt").write_text("not a slide\n", encoding="utf-8")
    write_generic_tiff(made.slides / ".hidden.tif", rng.integers(0, 255, (300, 300, 3), np.uint8), 0.5, 2)
    pixels = rng.integers(0, 255, (700, 900, 3), np.uint8)
    write_ome_tiff(made.slides / "ome.ome.tif", pixels, 0.25, levels=3)
    np.save(folder / "ome_pixels.npy", pixels)
    (made.results / "ome.ome").mkdir()
    (made.results / "ome.ome" / "gallery.json").symlink_to(outside / "secret.json")
    return made


@pytest.fixture(scope="module")
def client(viewer_slide: ViewerSlide) -> Iterator[TestClient]:
    app = create_app({}, ServeLimits(), None, slides=SlideFolder(viewer_slide.slides, viewer_slide.results))
    with TestClient(app) as test_client:
        yield test_client


def test_slides_listing_names_only_the_slides_inside_the_folder(client: TestClient) -> None:
    answer = client.get("/v1/slides")

    assert answer.status_code == 200
    listing = answer.json()
    assert listing["results_folder"] is True
    assert [slide["name"] for slide in listing["slides"]] == ["field_mosaic.tif", "ome.ome.tif"]
    mosaic = listing["slides"][0]
    assert mosaic["results"] == "field_mosaic"
    assert mosaic["files"] == ["detections.geojson", "gallery.json", "gallery.png", "slide_report.json"]
    assert mosaic["score"] == SCORE
    assert listing["slides"][1]["files"] == [] and listing["slides"][1]["score"] is None
    assert "/" not in json.dumps([slide["name"] for slide in listing["slides"]])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/slides/link.tif/image.dzi",  # a symlink in DIR to a slide outside it
        "/v1/slides/link.tif/image_files/0/0_0.jpeg",
        "/v1/slides/sub%2Finner.tif/image.dzi",  # an encoded slash: a subfolder's slide
        "/v1/slides/sub/inner.tif/image.dzi",
        "/v1/slides/%2E%2E/image.dzi",  # encoded ..
        "/v1/slides/..%2Foutside%2Fsecret.tif/image.dzi",
        "/v1/slides/%2Ftmp%2Fsecret.tif",  # an absolute path
        "/v1/slides/.hidden.tif/image.dzi",
        "/v1/slides/notes.txt",
        "/v1/slides/field_mosaic.tif/..%2F..%2Foutside%2Fsecret.json",  # out of RESULTS
        "/v1/slides/field_mosaic.tif/%2Fetc%2Fpasswd",
        "/v1/slides/field_mosaic.tif/image.dzi%00.json",
        "/v1/slides/ome.ome.tif/gallery.json",  # a symlink in RESULTS to a file outside it
    ],
)
def test_slides_refuse_every_path_outside_the_folders_with_404(client: TestClient, path: str) -> None:
    answer = client.get(path)

    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert list(answer.json()) == ["error"]  # a message, never a file's content


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v1/slides/../image.dzi",
        "/v1/slides/../../outside/secret.tif/image.dzi",
        "/v1/slides/field_mosaic.tif/../../outside/secret.json",
    ],
)
def test_slides_dot_dot_in_the_raw_path_is_refused(client: TestClient, raw_path: str) -> None:
    """A literal `..`, as a hand-made request sends it (httpx and browsers remove it): straight to the app."""
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    anyio.run(client.app, scope, receive, send)

    start = next(message for message in messages if message["type"] == "http.response.start")
    body = b"".join(
        message.get("body", b"") for message in messages if message["type"] == "http.response.body"
    )
    assert start["status"] == 404
    assert list(json.loads(body)) == ["error"]


def test_slides_descriptor_and_top_level_tile_decode_to_the_slide(
    client: TestClient, viewer_slide: ViewerSlide
) -> None:
    answer = client.get("/v1/slides/field_mosaic.tif/image.dzi")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    image = ElementTree.fromstring(answer.text)
    size = image.find(f"{DZI}Size")
    assert (int(size.get("Width")), int(size.get("Height"))) == (viewer_slide.width, viewer_slide.height)
    assert (image.get("TileSize"), image.get("Overlap"), image.get("Format")) == (str(TILE_SIZE), "1", "jpeg")
    top = int(np.ceil(np.log2(max(viewer_slide.width, viewer_slide.height))))  # level N is full size

    tile = client.get(f"/v1/slides/field_mosaic.tif/image_files/{top}/1_1.jpeg")

    assert tile.status_code == 200
    assert tile.headers["content-type"] == "image/jpeg"
    decoded = Image.open(io.BytesIO(tile.content))
    assert decoded.format == "JPEG"
    assert decoded.size == (TILE_SIZE + 2 * OVERLAP, TILE_SIZE + 2 * OVERLAP)  # an inner tile
    slide = np.asarray(Image.open(viewer_slide.slide).convert("RGB"), dtype=np.float64)
    start = TILE_SIZE - OVERLAP
    expected = slide[start : start + decoded.size[1], start : start + decoded.size[0]]
    assert np.abs(np.asarray(decoded, dtype=np.float64) - expected).mean() < 3  # JPEG's error only


def test_slides_png_tile_at_the_smallest_levels_and_tiles_outside_are_404(client: TestClient) -> None:
    tile = client.get("/v1/slides/field_mosaic.tif/image_files/0/0_0.png")
    assert tile.status_code == 200
    decoded = Image.open(io.BytesIO(tile.content))
    assert (decoded.format, decoded.size) == ("PNG", (1, 1))

    assert client.get("/v1/slides/field_mosaic.tif/image_files/0/1_0.jpeg").status_code == 404
    assert client.get("/v1/slides/field_mosaic.tif/image_files/99/0_0.jpeg").status_code == 404
    assert client.get("/v1/slides/field_mosaic.tif/image_files/5/0_0.gif").status_code == 404


def test_slides_ome_tiff_tiles_come_from_its_pyramid_through_tifffile(
    client: TestClient, viewer_slide: ViewerSlide
) -> None:
    info = client.get("/v1/slides/ome.ome.tif").json()
    assert (info["width"], info["height"], info["format"]) == (900, 700, "ome-tiff")
    assert info["levels"] == [[900, 700], [450, 350], [225, 175]]
    assert info["mpp"] == pytest.approx([0.25, 0.25])
    image = ElementTree.fromstring(client.get("/v1/slides/ome.ome.tif/image.dzi").text)
    assert image.find(f"{DZI}Size").get("Width") == "900"

    full = client.get("/v1/slides/ome.ome.tif/image_files/10/0_0.png")  # 2^10 >= 900: full size

    decoded = np.asarray(Image.open(io.BytesIO(full.content)))
    pixels = np.load(viewer_slide.slides.parent / "ome_pixels.npy")
    assert decoded.shape == (TILE_SIZE + OVERLAP, TILE_SIZE + OVERLAP, 3)
    assert np.array_equal(decoded, pixels[: TILE_SIZE + OVERLAP, : TILE_SIZE + OVERLAP])  # PNG: exact
    low = Image.open(io.BytesIO(client.get("/v1/slides/ome.ome.tif/image_files/8/0_0.png").content))
    assert low.size == (225, 175)  # read from the pyramid's level 2


def test_slides_results_pass_through_as_predict_wrote_them(
    client: TestClient, viewer_slide: ViewerSlide
) -> None:
    folder = viewer_slide.results / "field_mosaic"
    for name, media_type in [
        ("detections.geojson", "application/geo+json"),
        ("gallery.json", "application/json"),
        ("gallery.png", "image/png"),
        ("slide_report.json", "application/json"),
    ]:
        answer = client.get(f"/v1/slides/field_mosaic.tif/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == media_type
        assert answer.content == (folder / name).read_bytes()
    features = client.get("/v1/slides/field_mosaic.tif/detections.geojson").json()["features"]
    assert len(features) == len(viewer_slide.labels)

    missing = client.get("/v1/slides/ome.ome.tif/detections.geojson")
    assert missing.status_code == 404
    assert "no ome.ome/detections.geojson" in missing.json()["error"]
    assert str(viewer_slide.results) not in missing.text  # no server paths in answers


def test_slides_without_a_model_open_the_slide_viewer(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/slides.html"
    page = client.get("/slides.html")
    assert page.status_code == 200 and "/static/openseadragon.min.js" in page.text
    script = client.get("/static/openseadragon.min.js")
    assert script.status_code == 200 and script.text.startswith("//! openseadragon")
    assert client.get("/static/openseadragon-LICENSE.txt").status_code == 200
    detect = client.post("/v1/detect")
    assert detect.status_code == 404 and "--model" in detect.json()["error"]


def test_slides_folder_without_results_lists_no_files(viewer_slide: ViewerSlide) -> None:
    folder = SlideFolder(viewer_slide.slides)
    slide = folder.find("field_mosaic.tif")
    assert folder.result_file(slide, "detections.geojson") is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["serve"], "give --model EXPORT_DIR, --slides DIR, or both"),
        (["serve", "--slide-results", "x"], "--slide-results RESULTS goes with --slides DIR"),
        (["serve", "--slides", "/no/such/folder"], "--slides /no/such/folder: not a folder"),
    ],
)
def test_slides_cli_refuses_missing_or_unpaired_folders(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_slides_openslide_fixtures_serve_tiles_and_name_the_broken_ones(
    shared_data: Path, tmp_path: Path
) -> None:
    """OpenSlide's own fixtures: an Aperio SVS and a generic TIFF tile; a TIFF no reader opens and
    an SVS whose tiles cannot be decoded answer 422 with OpenSlide's reason and the file's name."""
    for name in ("small.svs", "boxes.tiff", "unopenable.tiff", "unreadable.svs"):
        shutil.copyfile(shared_data / "wsi_formats" / name, tmp_path / name)
    app = create_app({}, ServeLimits(), None, slides=SlideFolder(tmp_path))
    with TestClient(app) as client:
        listed = [slide["name"] for slide in client.get("/v1/slides").json()["slides"]]
        svs = client.get("/v1/slides/small.svs/image_files/4/0_0.jpeg")  # 2^4 = 16: full size
        pyramid = client.get("/v1/slides/boxes.tiff/image_files/9/1_0.png")  # 2^9 >= 300
        unopenable = client.get("/v1/slides/unopenable.tiff/image.dzi")
        unreadable = client.get("/v1/slides/unreadable.svs/image_files/0/0_0.jpeg")

    assert listed == ["boxes.tiff", "small.svs", "unopenable.tiff", "unreadable.svs"]
    assert Image.open(io.BytesIO(svs.content)).size == (16, 16)
    assert Image.open(io.BytesIO(pyramid.content)).size == (300 - TILE_SIZE + OVERLAP, 250)
    for answer, name in ((unopenable, "unopenable.tiff"), (unreadable, "unreadable.svs")):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"].startswith(name)
        assert str(tmp_path) not in answer.text
