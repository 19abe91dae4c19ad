"""`cervical-tf serve` bounds the work of a request, not only its wait for a model slot.

The server runs a fake export that sleeps SECONDS_PER_CALL per model call (idle, not computing),
so "long work" is a known number of tiles or instances; with --request-timeout
REQUEST_TIMEOUT_S, a request whose calls outlast it is stopped. The proof that a stopped request
freed its model slot is the next request's 200: with the slot still busy for the rest of the
stopped work, that request would get the 503 "busy" after REQUEST_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fake_export import write_fake_export
from PIL import Image
from server_process import running_server, server_process

from cervical_tf.inference.tiling import tile_count
from cervical_tf.serve import tf_serving_request
from cervical_tf.serve.jobs import Job
from cervical_tf.serve.limits import RequestError, ServeLimits, check_tiles
from cervical_tf.serve.slots import WorkerSlots

SECONDS_PER_CALL = 0.2
REQUEST_TIMEOUT_S = 3
DEFAULT_MAX_TILES = 256
LONG_TILING = "tile=32&overlap=0"  # a 224 px image: 7 x 7 = 49 tiles, about 10 s of model calls
LONG_SIDE = 224


@pytest.fixture(scope="module")
def slow_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_export(tmp_path_factory.mktemp("export") / "slow", seconds_per_call=SECONDS_PER_CALL)


@pytest.fixture(scope="module")
def fast_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_export(tmp_path_factory.mktemp("export") / "fast")


@pytest.fixture(scope="module")
def server(slow_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, log file) of `cervical-tf serve` on the slow export, --request-timeout 3."""
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    arguments = ["--model", f"slow={slow_export}", "--request-timeout", str(REQUEST_TIMEOUT_S)]
    with running_server(arguments, log_path) as base_url:
        yield base_url, log_path


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as http:
        yield http


def test_serve_too_many_tiles_is_413_at_once_while_a_normal_request_is_served(
    server: tuple[str, Path],
) -> None:
    """The issue's request: a 4000 x 4000 upload with tile=32&overlap=31 (15.7 million model calls)."""
    hostile = _png(4000, 4000)
    expected_tiles = tile_count(4000, 4000, 32, 31)

    def post(query: str, image: bytes) -> tuple[httpx.Response, float]:
        with httpx.Client(base_url=server[0], timeout=30) as http:
            response = http.post(f"/v1/detect?{query}", files={"image": ("field.png", image)})
        return response, time.monotonic()

    with ThreadPoolExecutor(2) as pool:
        normal = pool.submit(post, "tile=32&overlap=0", _png(96, 96))  # 9 tiles, about 2 s
        time.sleep(0.5)  # the normal request now holds the only model slot
        refused = pool.submit(post, "tile=32&overlap=31", hostile)
        (refusal, refused_at), (served, served_at) = refused.result(), normal.result()
    assert refusal.status_code == 413
    message = refusal.json()["error"]
    assert f"{expected_tiles} tiles" in message
    assert f"limit of {DEFAULT_MAX_TILES}" in message
    assert "--max-tiles" in message and "tile" in message and "overlap" in message
    assert refused_at < served_at  # refused from the header, without waiting for the model slot
    assert served.status_code == 200, served.text
    assert [detection["class"] for detection in served.json()["detections"]] == ["dark"]


def test_serve_deadline_stops_the_tiles_and_frees_the_slot(
    client: httpx.Client, server: tuple[str, Path]
) -> None:
    long = client.post(f"/v1/detect?{LONG_TILING}", files={"image": ("long.png", _png(LONG_SIDE, LONG_SIDE))})
    assert long.status_code == 503
    assert long.headers["retry-after"] == str(REQUEST_TIMEOUT_S)
    assert "--request-timeout" in long.json()["error"]
    after = client.post("/v1/detect", files={"image": ("after.png", _png(96, 96))})
    assert after.status_code == 200, after.text
    line = _log_line(server[1], "long.png: stopped after")
    assert re.search(r"stopped after \d+ of 49 model calls", line), line
    assert "--request-timeout" in line


def test_serve_client_disconnect_stops_the_work(server: tuple[str, Path], client: httpx.Client) -> None:
    files = {"image": ("gone.png", _png(LONG_SIDE, LONG_SIDE))}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s and closes the connection
        httpx.post(f"{server[0]}/v1/detect?{LONG_TILING}", files=files, timeout=1.0)
    line = _log_line(server[1], "gone.png: stopped after")
    assert "the client disconnected" in line  # stopped for the disconnect, not at the deadline
    after = client.post("/v1/detect", files={"image": ("after.png", _png(96, 96))})
    assert after.status_code == 200, after.text


def test_serve_predict_instances_stop_at_the_deadline(client: httpx.Client, server: tuple[str, Path]) -> None:
    pixel = [[[20, 20, 20]]]
    long = client.post("/v1/models/slow:predict", json={"instances": [pixel] * 30})  # about 6 s of calls
    assert long.status_code == 503
    assert "--request-timeout" in long.json()["error"]
    after = client.post("/v1/models/slow:predict", json={"instances": [pixel]})
    assert after.status_code == 200, after.text
    line = _log_line(server[1], "instances: stopped after")
    assert re.search(r"stopped after \d+ of 30", line), line


def test_serve_sigterm_during_long_work_exits_promptly(slow_export: Path, tmp_path: Path) -> None:
    """The issue's server computed for 18 minutes after SIGTERM; here the work would last ~34 s."""
    log_path = tmp_path / "server.log"
    answers: list[httpx.Response] = []
    with server_process(["--model", f"slow={slow_export}"], log_path) as started:

        def long_request() -> None:  # 13 x 13 = 169 tiles, within the default limits
            files = {"image": ("long.png", _png(416, 416))}
            answers.append(httpx.post(f"{started.url}/v1/detect?{LONG_TILING}", files=files, timeout=60))

        worker = threading.Thread(target=long_request)
        worker.start()
        time.sleep(1.0)  # the model is now working on the tiles
        started.process.send_signal(signal.SIGTERM)
        started.process.wait(timeout=20)
        worker.join(timeout=20)
    assert len(answers) == 1
    assert answers[0].status_code == 503
    assert "shutting down" in answers[0].json()["error"]


def test_serve_body_that_does_not_arrive_in_time_is_408(server: tuple[str, Path]) -> None:
    with _raw_request(server[0], "/v1/models/slow:predict", declared=100, sent=b'{"instances": ') as raw:
        raw.settimeout(REQUEST_TIMEOUT_S + 10)  # a generous bound: the deadline is REQUEST_TIMEOUT_S
        answer = b""
        while b"}" not in answer:  # the JSON error closes the answer (the socket may stay open)
            received = raw.recv(65536)
            assert received, f"the server closed the connection without an answer: {answer!r}"
            answer += received
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive within 3 s (--request-timeout)" in answer


def test_serve_client_leaving_during_its_upload_is_logged_not_an_error(server: tuple[str, Path]) -> None:
    with _raw_request(server[0], "/v1/models/slow:predict", declared=100, sent=b'{"instances": '):
        time.sleep(0.3)  # the server is reading the body; closing the socket now leaves it half sent
    _log_line(server[1], "POST /v1/models/slow:predict 499")  # asserts the line comes
    assert "unexpected error" not in server[1].read_text(errors="replace")


def test_serve_predict_parses_one_body_at_a_time(fast_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON parsing holds memory (~8x the body): --max-concurrent-parses (default 1) bounds it."""
    from cervical_tf.serve.app import create_app

    parsing = [0]
    most = [0]
    parse = tf_serving_request.parse_predict_request

    def counting_parse(body: bytes, signature: dict) -> tf_serving_request.PredictRequest:
        parsing[0] += 1
        most[0] = max(most[0], parsing[0])
        time.sleep(0.3)  # a long parse: the others must wait for it
        parsing[0] -= 1
        return parse(body, signature)

    monkeypatch.setattr(tf_serving_request, "parse_predict_request", counting_parse)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        app = create_app({"fake": fast_export}, ServeLimits(), None)
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit  # create_app sets it for the server's process

    async def three_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve", timeout=30) as http:
            body = {"instances": [[[[20, 20, 20]]]]}
            return await asyncio.gather(*(http.post("/v1/models/fake:predict", json=body) for _ in range(3)))

    responses = asyncio.run(three_at_once())
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert most[0] == 1


def test_serve_stopped_work_keeps_its_slot_until_the_worker_returns() -> None:
    """A request answered at its deadline frees the slot only when its worker really ends, so
    --max-concurrent bounds the model calls running, not just the requests being answered."""
    release = threading.Event()

    async def scenario() -> tuple[RequestError, RequestError, str]:
        slots = WorkerSlots(1, "model", "--max-concurrent")
        try:
            with pytest.raises(RequestError) as overdue:  # its worker ignores the stop and runs on
                await slots.run(Job(timeout_s=0.2), lambda: release.wait(10))
            with pytest.raises(RequestError) as busy:
                await slots.run(Job(timeout_s=0.2), lambda: "ran beside the first")
            release.set()
            return overdue.value, busy.value, await slots.run(Job(timeout_s=10), lambda: "ran after it")
        finally:
            release.set()
            slots.close()

    overdue, busy, after = asyncio.run(scenario())
    assert (overdue.status, busy.status) == (503, 503)
    assert "did not finish within 0.2 s (--request-timeout)" in overdue.message
    assert "no model slot became free" in busy.message
    assert after == "ran after it"


@pytest.mark.parametrize("tile", [32, 33, 100, 512])
@pytest.mark.parametrize("overlap", [0, 7, 31])
def test_serve_tile_count_is_tilings_count(tile: int, overlap: int) -> None:
    limits = ServeLimits(max_tiles=10**9)
    for width, height in [(1, 1), (32, 32), (33, 64), (100, 101), (1000, 47), (4000, 4000)]:
        expected = tile_count(width, height, tile, overlap)
        assert check_tiles("x.png", width, height, tile, overlap, limits) == expected, (width, height)
    assert check_tiles("x.png", 4000, 4000, None, overlap, limits) == 1


def test_serve_tile_count_of_a_100_million_pixel_wide_header_is_refused() -> None:
    """Counting must not list the tile offsets: that would be 10^8 Python ints for this image."""
    with pytest.raises(RequestError) as refused:
        check_tiles("strip.png", 100_000_000, 1, 32, 31, ServeLimits())
    assert refused.value.status == 413
    assert "99999969 tiles" in refused.value.message


def _png(width: int, height: int) -> bytes:
    """A white PNG with a dark block near its top-left corner (the fake model's class 'dark')."""
    image = Image.new("RGB", (width, height), (230, 230, 230))
    image.paste((20, 20, 20), (8, 8, 24, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _log_line(log_path: Path, text: str, within_s: float = 10.0) -> str:
    """The last server log line holding `text`, waited for up to `within_s` (it may follow the answer)."""
    deadline = time.monotonic() + within_s
    while True:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if text in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert lines, f"no log line with {text!r} within {within_s:g} s:\n{log_path.read_text(errors='replace')}"
    return lines[-1]


@contextmanager
def _raw_request(base_url: str, path: str, declared: int, sent: bytes) -> Iterator[socket.socket]:
    """A socket that sent a POST declaring a `declared`-byte body but only `sent` of it; closed on exit."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        raw.sendall(f"{head}Content-Length: {declared}\r\n\r\n".encode() + sent)
        yield raw
