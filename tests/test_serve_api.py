"""`cervical-tf serve`: the real server, started as a subprocess on 127.0.0.1, spoken to over HTTP.

One server (module fixture) serves the fake export twice: as `fake` (no model card) and, named by
its folder, as `second` (a model card saying it was trained on the synthetic sample); with
--max-upload-mb 1, --max-predict-mb 0.5 and --max-image-pixels 1000000 so the limits are
testable with small requests, and --abnormal dark. The fake model finds dark pixels as
class 2 'dark' (0.9) and grey ones as class 1 'grey' (0.4). A few in-process tests cover what a
live server cannot show deterministically (a full queue, an unexpected exception).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_export import add_model_card, write_fake_export
from PIL import Image
from server_process import running_server

from cervical_tf import cli
from cervical_tf.cli.serve import parse_models
from cervical_tf.errors import DataError
from cervical_tf.export.model_card import SYNTHETIC_WARNING
from cervical_tf.inference.predictor import Predictor
from cervical_tf.serve.jobs import Job
from cervical_tf.serve.limits import RequestError, ServeLimits
from cervical_tf.serve.slots import WorkerSlots
from cervical_tf.serve.tf_serving_request import parse_predict_request


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_export(tmp_path_factory.mktemp("export") / "fake")


@pytest.fixture(scope="module")
def server(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, log file) of a running `cervical-tf serve`; stopped at the end of the module."""
    second = add_model_card(shutil.copytree(export_dir, tmp_path_factory.mktemp("copy") / "second"), "all")
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    arguments = ["--model", f"fake={export_dir}", "--model", str(second), "--max-upload-mb", "1"]
    arguments += ["--max-predict-mb", "0.5", "--max-image-pixels", "1000000", "--abnormal", "dark"]
    with running_server(arguments, log_path) as base_url:
        yield base_url, log_path


@pytest.fixture(scope="module")
def predictor(export_dir: Path) -> Predictor:
    """The export loaded in this process, to compare the server's predict API with."""
    return Predictor.load(export_dir)


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as http:
        yield http


def test_serve_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": ["fake", "second"]}


@pytest.mark.parametrize("path", ["/v1/models/fake", "/v1/models/fake/versions/1", "/v1/models/second"])
def test_serve_model_status_as_tf_serving(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/v1/models/nope", "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models/fake/versions/2", "Servable not found for request: Specific(fake, 2)"),
        ("GET", "/v1/models/nope/metadata", "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/nope:predict", "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/detect?model=nope", "Servable not found for request: Latest(nope)"),
    ],
)
def test_serve_unknown_model_is_404(client: httpx.Client, method: str, path: str, message: str) -> None:
    response = client.request(method, path, json={"instances": [[[[0, 0, 0]]]]})
    assert response.status_code == 404
    assert response.json() == {"error": message}


def test_serve_metadata_describes_the_signature(client: httpx.Client) -> None:
    metadata = client.get("/v1/models/fake/metadata").json()
    assert metadata["model_spec"] == {"name": "fake", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    image_input = signature["inputs"]["input_tensor"]
    assert image_input["dtype"] == "DT_UINT8"
    assert [dim["size"] for dim in image_input["tensor_shape"]["dim"]] == ["1", "-1", "-1", "3"]
    assert set(signature["outputs"]) == {
        "detection_boxes",
        "detection_scores",
        "detection_classes",
        "num_detections",
    }
    assert signature["outputs"]["detection_boxes"]["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in signature["outputs"]["detection_boxes"]["tensor_shape"]["dim"]] == [
        "1",
        "-1",
        "4",
    ]


def test_serve_metadata_adds_the_model_card_beside_tf_servings_keys(client: httpx.Client) -> None:
    synthetic = client.get("/v1/models/second/metadata").json()
    assert set(synthetic) == {"model_spec", "metadata", "model_card"}  # TF Serving's two keys, unchanged
    assert set(synthetic["metadata"]) == {"signature_def"}
    assert synthetic["model_card"]["warning"] == SYNTHETIC_WARNING
    assert synthetic["model_card"]["training_data"]["synthetic_sample"] == "all"
    assert synthetic["model_card"]["training"]["steps"] == 300
    assert client.get("/v1/models/fake/versions/1/metadata").json()["model_card"]["provenance"] == "unknown"


def test_serve_detect_carries_the_model_card_of_the_model_that_answered(client: httpx.Client) -> None:
    files = {"image": ("cells.png", _png_bytes(_field(100, 150)), "image/png")}
    answer = client.post("/v1/detect?model=second", files=files).json()
    assert answer["model_card"]["warning"] == SYNTHETIC_WARNING
    assert answer["model_card"]["summary"].startswith(SYNTHETIC_WARNING.upper())
    collection = client.post("/v1/models/second/detect?format=geojson", files=files).json()
    assert collection["model_card"] == answer["model_card"]


def test_serve_predict_row_format_equals_run_signature(client: httpx.Client, predictor: Predictor) -> None:
    images = [_small_field(dark=True), _small_field(dark=False)]
    response = client.post(
        "/v1/models/fake:predict", json={"instances": [image.tolist() for image in images]}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for image, prediction in zip(images, predictions, strict=True):
        expected = predictor.run_signature({"input_tensor": image[np.newaxis]})
        assert set(prediction) == set(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(np.array(prediction[name], dtype=np.float32), value[0])
    assert predictions[0]["detection_scores"][:3] == [0.9, 0.4, 0.0]  # float32 as its shortest decimal


def test_serve_predict_columnar_format_equals_run_signature(
    client: httpx.Client, predictor: Predictor
) -> None:
    batch = np.stack([_small_field(dark=True), _small_field(dark=False)])
    body = {"signature_name": "serving_default", "inputs": {"input_tensor": batch.tolist()}}
    response = client.post("/v1/models/fake/versions/1:predict", json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    runs = [predictor.run_signature({"input_tensor": image[np.newaxis]}) for image in batch]
    for name in runs[0]:
        np.testing.assert_array_equal(
            np.array(outputs[name], dtype=np.float32), np.concatenate([run[name] for run in runs])
        )
    # The plain-value columnar form (one input) answers the same.
    plain = client.post("/v1/models/fake:predict", json={"inputs": batch.tolist()}).json()
    assert plain == {"outputs": outputs}


def test_serve_predict_refuses_b64_for_a_uint8_input(client: httpx.Client) -> None:
    encoded = base64.b64encode(_png_bytes(_small_field(dark=True))).decode("ascii")
    response = client.post("/v1/models/fake:predict", json={"instances": [{"b64": encoded}]})
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("Failed to process element: 0 of 'instances' list. Error: JSON Value: {\"b64\"")
    assert message.endswith("Type: Object is not of expected type: uint8")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "JSON Parse error"),
        (b"[1, 2]", "Is not object"),
        (b'{"instances": []}', "No values in 'instances' array"),
        (b'{"other": 1}', "Missing 'inputs' or 'instances' key"),
        (b'{"instances": [[[[1, 2, 3]]]], "inputs": []}', "expecting only one of 'inputs' or 'instances'"),
        (b'{"instances": [[[[1, 2, 3.5]]]]}', "JSON Value: 3.5 Type: Number is not of expected type: uint8"),
        (b'{"instances": [[[[1, 2, 256]]]]}', "JSON Value: 256 Type: Number is not of expected type: uint8"),
        (b'{"instances": [[[1, 2, 3]]]}', "expects shape [-1,-1,3] per instance"),
        (b'{"instances": [[[[1, 2]]]]}', "expects shape [-1,-1,3] per instance"),
        (b'{"instances": [[[[1, 2, 3]], [[1, 2]]]]}', "not rectangular"),
        (b'{"inputs": {"image": [[[[1, 2, 3]]]]}}', "Missing named input: input_tensor in 'inputs' object."),
        (b'{"instances": [{"image": [[[1, 2, 3]]]}]}', "keys must be equal to: input_tensor"),
        (b'{"signature_name": "other", "instances": [[[[1, 2, 3]]]]}', 'signature name: "other" not found'),
    ],
)
def test_serve_predict_bad_request_is_400(client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post("/v1/models/fake:predict", content=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_serve_detect_json_has_the_viewers_shape(client: httpx.Client, export_dir: Path) -> None:
    image = _field(100, 150)  # dark block x 30..50, y 10..20; grey block x 60..90, y 50..70
    response = client.post("/v1/detect", files={"image": ("cells.png", _png_bytes(image), "image/png")})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "image": "cells.png",
        "width": 150,
        "height": 100,
        "model": "fake",
        "min_score": 0.05,
        "detections": [
            {"box": [30.0, 10.0, 50.0, 20.0], "class": "dark", "class_id": 2, "score": 0.9, "abnormal": True},
            {
                "box": [60.0, 50.0, 90.0, 70.0],
                "class": "grey",
                "class_id": 1,
                "score": 0.4,
                "abnormal": False,
            },
        ],
        "counts": {"grey": 1, "dark": 1},
        "abnormal": {
            "classes": ["dark"],
            "count": 1,
            "image_abnormal": True,
            "chosen_by": "given with --abnormal",
        },
        "colors": {"grey": "#1f77b4", "dark": "#ff7f0e"},
        "abnormal_first": [0],
        "model_card": {
            "provenance": "unknown",
            "summary": f"unknown provenance: no model_card.json in {export_dir} (exported before model "
            "cards, or not by `cervical-tf export`): nothing says what this model was trained on",
            "warning": None,
        },
    }


def test_serve_detect_min_score_model_and_other_formats(client: httpx.Client) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(_field(100, 150)).convert("L").save(jpeg, format="JPEG", quality=95)
    files = {"image": ("grey.jpg", jpeg.getvalue(), "application/octet-stream")}
    found = client.post("/v1/models/second/detect?min_score=0.5", files=files).json()
    assert found["model"] == "second"
    assert (found["width"], found["height"]) == (150, 100)
    assert [detection["class"] for detection in found["detections"]] == ["dark"]
    assert found["counts"] == {"grey": 0, "dark": 1}


def test_serve_detect_geojson_is_the_writers_feature_collection(client: httpx.Client) -> None:
    files = {"image": ("cells.bmp", _image_bytes(_field(100, 150), "BMP"))}
    response = client.post("/v1/detect?format=geojson", files=files)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    collection = json.loads(response.text)
    assert collection["type"] == "FeatureCollection"
    first = collection["features"][0]
    assert first["properties"]["objectType"] == "detection"
    assert first["properties"]["classification"] == {"name": "dark", "color": [255, 127, 14]}
    assert first["properties"]["image"] == "cells.bmp"
    assert first["geometry"]["coordinates"] == [
        [[30.0, 10.0], [50.0, 10.0], [50.0, 20.0], [30.0, 20.0], [30.0, 10.0]]
    ]


def test_serve_upload_over_the_limit_is_413(client: httpx.Client) -> None:
    oversized = _png_bytes(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8))
    assert len(oversized) > 1024 * 1024
    response = client.post("/v1/detect", files={"image": ("big.png", oversized)})
    assert response.status_code == 413
    assert "--max-upload-mb" in response.json()["error"]

    assert client.get("/healthz").status_code == 200


def test_serve_predict_body_over_its_own_limit_is_413(client: httpx.Client) -> None:
    """:predict JSON has its own limit (--max-predict-mb 0.5 here), under the upload limit (1 MB)."""
    declared = client.post("/v1/models/fake:predict", content=b" " * 700_000)
    assert declared.status_code == 413
    assert declared.json()["error"] == (
        "the request body is 700000 bytes, over the limit of 0.5 MB (524288 bytes, --max-predict-mb)"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield from (b" " * 65536 for _ in range(20))

    streamed = client.post("/v1/models/fake:predict", content=chunks())
    assert streamed.status_code == 413
    assert "--max-predict-mb" in streamed.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_serve_text_file_named_png_is_415(client: httpx.Client) -> None:
    response = client.post("/v1/detect", files={"image": ("x.png", b"just some text\n", "image/png")})
    assert response.status_code == 415
    assert response.json()["error"].startswith("x.png: not an image this server reads")


def test_serve_truncated_png_is_422(client: httpx.Client) -> None:
    whole = _png_bytes(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    response = client.post("/v1/detect", files={"image": ("cut.png", whole[: len(whole) // 2])})
    assert response.status_code == 422
    assert "cannot be decoded" in response.json()["error"]


@pytest.mark.parametrize("side", [1200, 20000])  # over the limit (1000000), then over twice the limit
def test_serve_decompression_bomb_is_413_before_decoding(client: httpx.Client, side: int) -> None:
    bomb = _bilevel_png(side)
    assert len(bomb) < 100_000  # a few KB that would decode into side * side pixels
    response = client.post("/v1/detect", files={"image": ("bomb.png", bomb)})
    assert response.status_code == 413  # refused from the header: the pixels are never decoded
    assert "--max-image-pixels" in response.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_serve_bad_query_and_unknown_route_are_json_4xx(client: httpx.Client) -> None:
    files = {"image": ("cells.png", _png_bytes(_field(40, 40)))}
    for query in ("min_score=high", "min_score=2", "tile=8", "format=xml"):
        response = client.post(f"/v1/detect?{query}", files=files)
        assert response.status_code == 400, query
        assert "error" in response.json()
    missing_field = client.post("/v1/detect", files={"picture": ("cells.png", _png_bytes(_field(40, 40)))})
    assert missing_field.status_code == 400
    assert "field named 'image'" in missing_field.json()["error"]
    unknown = client.get("/v1/nothing")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Not Found: GET /v1/nothing"}


def test_serve_viewer_files(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert client.get("/static/viewer.js").status_code == 200


def test_serve_logs_one_line_per_request(client: httpx.Client, server: tuple[str, Path]) -> None:
    client.get("/healthz?probe=log")
    lines: list[str] = []
    for _ in range(50):  # the log line is written after the response is sent
        lines = [
            line
            for line in server[1].read_text().splitlines()
            if "cervical_tf.serve: GET /healthz 200" in line
        ]
        if lines:
            break
        time.sleep(0.1)
    assert lines
    assert lines[-1].endswith(" ms")


# In-process: the command line, the queue, the last-resort handler, the string inputs.


def test_serve_invalid_export_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.main(["serve", "--model", str(tmp_path / "empty"), "--port", "1"]) == 2
    assert "no saved_model/saved_model.pb inside" in capsys.readouterr().err


def test_serve_model_names() -> None:
    assert parse_models(["a=/x/one", "/y/two"]) == {"a": Path("/x/one"), "two": Path("/y/two")}
    with pytest.raises(DataError, match="given twice"):
        parse_models(["/x/one", "/y/one"])
    with pytest.raises(DataError, match="--max-concurrent must be greater than 0"):
        ServeLimits(max_concurrent=0)


def test_serve_full_queue_is_503_with_retry_after() -> None:
    release = threading.Event()

    async def scenario() -> RequestError:
        slots = WorkerSlots(1, "model", "--max-concurrent")
        busy = asyncio.create_task(slots.run(Job(timeout_s=10), lambda: release.wait(10)))
        await asyncio.sleep(0.05)  # the first call holds the only slot, in its worker thread
        try:
            await slots.run(Job(timeout_s=0.2), lambda: True)
        except RequestError as error:
            return error
        finally:
            release.set()
            await busy
            slots.close()
        raise AssertionError("the second call should have timed out")

    error = asyncio.run(scenario())
    assert error.status == 503
    assert error.headers == {"Retry-After": "1"}
    assert "no model slot became free within 0.2 s (--request-timeout, --max-concurrent)" in error.message


def test_serve_unexpected_error_is_500_and_serving_goes_on(export_dir: Path) -> None:
    from cervical_tf.serve.app import create_app

    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        app = create_app({"fake": export_dir}, ServeLimits(), None)
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit  # create_app sets it for the server's process

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            return await http.get("/boom"), await http.get("/healthz")

    failed, healthy = asyncio.run(scenario())
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error: RuntimeError: kaput"}
    assert healthy.status_code == 200


def test_serve_b64_decodes_for_a_string_input() -> None:
    signature = {"inputs": {"input_tensor": {"dtype": "string", "shape": [1], "name": "input_tensor"}}}
    body = json.dumps({"instances": [{"b64": base64.b64encode(b"\x89PNG...").decode()}, "text"]})
    parsed = parse_predict_request(body.encode(), signature)
    assert [run["input_tensor"].tolist() for run in parsed.runs] == [[b"\x89PNG..."], [b"text"]]


def _field(height: int, width: int) -> np.ndarray:
    """A white field with a dark block (x 30..50, y 10..20) and a grey one (x 60..90, y 50..70)."""
    image = np.full((height, width, 3), 230, dtype=np.uint8)
    image[10:20, 30:50] = 20
    image[50:70, 60:90] = 90
    return image


def _small_field(dark: bool) -> np.ndarray:
    """20 x 30 px: a grey block (x 12..20, y 10..15) and, if `dark`, a dark one (x 3..9, y 2..6)."""
    image = np.full((20, 30, 3), 230, dtype=np.uint8)
    image[10:15, 12:20] = 90
    if dark:
        image[2:6, 3:9] = 20
    return image


def _png_bytes(image: np.ndarray) -> bytes:
    return _image_bytes(image, "PNG")


def _image_bytes(image: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def _bilevel_png(side: int) -> bytes:
    """A valid 1-bit side x side PNG of zeros, written row by row (never held as pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte, then side bits
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_serve_detect_counts_one_cell_once_across_classes(client: httpx.Client) -> None:
    """A dark nucleus filling a grey cell: the fake model boxes both, overlapping (IoU 0.69).

    Per-class NMS keeps both labels for one cell; /v1/detect's default (agnostic NMS) keeps the
    higher-scoring one, and `agnostic_nms=false` restores the model's own output.
    """
    image = np.full((100, 100, 3), 255, np.uint8)
    image[20:80, 20:80] = 90  # grey cell: 60 x 60
    image[25:75, 25:75] = 30  # dark: 50 x 50 inside it, a 5 px grey ring around
    files = {"image": ("cell.png", _png_bytes(image), "image/png")}
    default = client.post("/v1/detect", files=files).json()
    assert [(item["class"], item["box"]) for item in default["detections"]] == [
        ("dark", [25.0, 25.0, 75.0, 75.0])
    ]
    assert default["counts"] == {"grey": 0, "dark": 1}
    per_class = client.post("/v1/detect?agnostic_nms=false", files=files).json()
    assert [item["class"] for item in per_class["detections"]] == ["dark", "grey"]
