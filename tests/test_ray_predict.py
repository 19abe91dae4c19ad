"""`predict --ray`: on a local Ray of two CPUs the images and the slide tiles run on two actors, and
every file is the one plain `predict` writes; an unreadable image is reported as plain `predict`
reports it; an actor killed mid-run loses no item.

The stand-in model (tests/blob_export.py) finds dark blobs; the inputs are real CRIC fields, a
corrupt PNG, and a slide of four CRIC fields (tests/slide_mosaic.py). One Ray instance serves the
module (Ray takes seconds to start)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from blob_export import write_blob_export
from slide_mosaic import MPP, build_mosaic, with_card

from cervical_tf import cli

ACTORS = 2
# every file plain predict writes for this batch, compared byte for byte
RESULT_FILES = (
    "detections.json",
    "detections.csv",
    "detections.geojson",
    "coco_results.json",
    "model_card.json",
    "slides_ranked.csv",
    "slides_ranked.md",
    "slides_failed.csv",
    "mosaic.ome/detections.geojson",
    "mosaic.ome/detections.csv",
    "mosaic.ome/slide_report.json",
    "mosaic.ome/slide_report.md",
    "mosaic.ome/gallery.json",
    "mosaic.ome/gallery.png",
)


@pytest.fixture(scope="module")
def local_ray() -> object:
    """Ray of two CPUs in this process (a clean skip when the optional Ray is not installed)."""
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
    pytest.importorskip("ray.data")
    ray.init(address="local", num_cpus=ACTORS, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("inputs")
    mosaic = build_mosaic(folder)  # skips without the shared CRIC fields
    from shared_data import SHARED_DATA

    fields = sorted((SHARED_DATA / "cric8" / "images").glob("*.png"))[4:7]
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(fields[0].read_bytes()[:300])
    model = with_card(write_blob_export(folder / "blob"), MPP, 384)
    unreadable = SHARED_DATA / "wsi_formats" / "unreadable.svs"
    images = [*map(str, fields[:2]), str(corrupt), str(fields[2]), str(mosaic["ome"]), str(unreadable)]
    return {"model": model, "images": images, "slide": mosaic["ome"]}


def predict(model: Path, output: Path, *arguments: str) -> tuple[int, str]:
    """Exit status and stderr of `cervical-tf predict`."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = cli.main(["predict", "--model", str(model), "--output", str(output), *arguments])
    return status, stderr.getvalue()


@pytest.fixture(scope="module")
def runs(local_ray: object, inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Plain predict and predict --ray on the same inputs."""
    flags = ("--min-score", "0.3", "--abnormal", "dark", "--gallery", "8", *inputs["images"])
    plain = tmp_path_factory.mktemp("plain")
    on_ray = tmp_path_factory.mktemp("ray")
    started = time.perf_counter()
    plain_run = predict(inputs["model"], plain, *flags)
    plain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ray_run = predict(inputs["model"], on_ray, "--ray", *flags)
    print(f"plain predict {plain_seconds:.1f} s, --ray {time.perf_counter() - started:.1f} s")
    return {"plain": (plain, *plain_run), "ray": (on_ray, *ray_run)}


def skipped_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "skipped" in line or "could not be read" in line]


def test_ray_predict_writes_the_files_plain_predict_writes(runs: dict) -> None:
    plain, plain_status, _ = runs["plain"]
    on_ray, ray_status, _ = runs["ray"]

    assert plain_status == ray_status == 2  # the unreadable slide fails the batch, the rest is written
    for name in RESULT_FILES:
        assert (on_ray / name).read_bytes() == (plain / name).read_bytes(), name
    overlays = sorted(path.name for path in (plain / "overlays").iterdir())
    assert len(overlays) == 3
    assert sorted(path.name for path in (on_ray / "overlays").iterdir()) == overlays
    for name in overlays:
        assert (on_ray / "overlays" / name).read_bytes() == (plain / "overlays" / name).read_bytes()
    tiles = (on_ray / "mosaic.ome" / "tiles.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(tiles[1:]) == sorted(
        (plain / "mosaic.ome" / "tiles.jsonl").read_text(encoding="utf-8").splitlines()[1:]
    )
    assert len(tiles) > 10


def test_ray_predict_reports_an_unreadable_image_and_slide_as_plain_predict_does(runs: dict) -> None:
    plain, _, plain_stderr = runs["plain"]
    on_ray, _, ray_stderr = runs["ray"]

    reported = skipped_lines(plain_stderr.replace(str(plain), "RESULTS"))
    assert any("corrupt.png" in line for line in reported)
    assert any("unreadable.svs" in line for line in reported)
    assert skipped_lines(ray_stderr.replace(str(on_ray), "RESULTS")) == reported
    assert "ray: 2 actor(s) of 1 CPU" in ray_stderr


def test_ray_predict_retries_the_items_of_a_killed_actor(
    local_ray: object, runs: dict, inputs: dict, tmp_path: Path
) -> None:
    plain, _, _ = runs["plain"]
    output = tmp_path / "killed"
    log = output / "mosaic.ome" / "tiles.jsonl"
    killed: dict = {}

    def kill_one_actor_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            done = len(log.read_text(encoding="utf-8").splitlines()) - 1 if log.exists() else 0
            actors = [
                actor
                for actor in local_ray._private.state.actors().values()
                if actor["State"] == "ALIVE" and "ModelActor" in actor["ActorClassName"]
            ]
            if done >= 3 and actors:
                os.kill(actors[0]["Pid"], signal.SIGKILL)
                killed.update(pid=actors[0]["Pid"], tiles_done=done)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor_mid_run)
    killer.start()
    status, stderr = predict(
        inputs["model"], output, "--ray", "--min-score", "0.3", "--abnormal", "dark", "--gallery", "8",
        str(inputs["slide"]),
    )  # fmt: skip
    killer.join()

    assert status == 0, stderr
    tiles = log.read_text(encoding="utf-8").splitlines()[1:]
    assert killed and killed["tiles_done"] < len(tiles)  # the kill came mid-run
    assert "tiles it did not finish" not in stderr  # Ray retried them: none was left to the driver
    for name in ("detections.geojson", "detections.csv", "slide_report.json"):
        assert (output / "mosaic.ome" / name).read_bytes() == (plain / "mosaic.ome" / name).read_bytes()


def test_ray_predict_refuses_an_image_taken_as_its_address(
    local_ray: object, inputs: dict, tmp_path: Path
) -> None:
    status, stderr = predict(inputs["model"], tmp_path / "out", "--ray", *inputs["images"][:2])

    assert status == 2
    assert "--ray: expected no address, auto or HOST:PORT (the head's), got '/" in stderr

    status, stderr = predict(
        inputs["model"], tmp_path / "out", "--ray", "ray://head:10001", inputs["images"][0]
    )

    assert status == 2
    assert "Ray Data does not run through Ray Client (ray://)" in stderr


def test_ray_predict_without_ray_installed_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed

    status, stderr = predict(tmp_path / "model", tmp_path / "out", "--ray", "--min-score", "0.5", "x.png")

    assert status == 2
    assert "--ray needs Ray Data, which is not installed" in stderr
    assert "pip install -r requirements-ray.txt" in stderr


def test_ray_pool_reports_the_images_ray_did_not_finish(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cervical_tf.distributed.ray_predict import ItemResult, RayPool
    from cervical_tf.errors import DataError
    from cervical_tf.slides.detect import SlideOptions

    pool = RayPool(tmp_path / "model", actors=2)
    reason = "Ray stopped after 2 of 3 item(s): the actor died 4 times"
    partial = {0: ItemResult(value="detections of a"), 1: ItemResult(error="b.png: not a readable image")}
    monkeypatch.setattr(pool, "_map", lambda payloads, on_result=None: (partial, reason))
    fields = [(Path(name), tmp_path / f"{name}.png") for name in ("a.png", "b.png", "c.png")]

    found = pool.detect(None, [], tmp_path, SlideOptions(), fields, {}).fields

    assert [path for path, _ in found] == [path for path, _ in fields]
    assert found[0][1] == "detections of a"
    assert isinstance(found[1][1], DataError) and str(found[1][1]) == "b.png: not a readable image"
    assert isinstance(found[2][1], DataError) and str(found[2][1]) == f"c.png: not finished on Ray: {reason}"


def test_tile_logs_keep_every_tile_when_logs_are_closed_and_reopened(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import numpy as np

    from cervical_tf.distributed import ray_predict
    from cervical_tf.inference.tiling import RawDetections

    monkeypatch.setattr(ray_predict, "OPEN_LOGS", 1)  # every switch of slide closes the other log
    logs = ray_predict._TileLogs()
    paths = [tmp_path / name / "tiles.jsonl" for name in ("a", "b")]
    settings = {"tile": 512}
    assert logs.done(paths[0], settings) == logs.done(paths[1], settings) == set()
    raw = RawDetections(
        np.array([[1, 2, 30, 40]], np.float32), np.array([0.9], np.float32), np.array([1]), [False]
    )

    for index in range(6):
        logs.append(paths[index % 2], index, raw)
    logs.close()

    assert logs.done(paths[0], settings) == {0, 2, 4}
    assert logs.done(paths[1], settings) == {1, 3, 5}
    assert len(paths[0].read_text(encoding="utf-8").splitlines()) == 1 + 3  # the run line, then tiles
