"""`cervical-tf predict --ray`: images and slide tiles spread over Ray Data actors, one model each.

The work items are the images (fields) and the tiles of the slides. Each actor loads the export
once (`ModelActor`) and runs on an item exactly the code plain `predict` runs: a field through
`predict_images.predict_field` (decode, `Predictor.predict`, the overlay), a tile through
`slides.detect.detect_tile` (read at the model's pixel size, detect, keep the core, level-0 px).
The driver keeps every file that sums up a batch: tile results go into each slide's tiles.jsonl as
they arrive, and plain `predict` then finishes each slide from it (seam merge, reports, gallery,
ranked table, failures), so the files are those plain `predict` writes, and an interrupted run
resumes. Paths travel as they are: on a cluster every node must see the model, the inputs and
RESULTS at the same paths (a shared file system).

Failures are never dropped. An item that cannot be read answers with its DataError, which the
driver reports as plain `predict` does. An actor that dies (killed, out of memory) is restarted by
Ray and its item retried, up to `MAX_TASK_RETRIES` times; if Ray gives up, the images it did not
finish are reported as skipped with Ray's reason, and the tiles it did not finish are done by the
driver's own model when it finishes the slide.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cervical_tf.errors import DataError

if TYPE_CHECKING:
    from cervical_tf.inference.detections import Detections
    from cervical_tf.inference.predictor import Predictor
    from cervical_tf.inference.tiling import RawDetections
    from cervical_tf.slides.detect import SlideOptions, SlideTiles
    from cervical_tf.slides.plan import ReadPlan, Tile
    from cervical_tf.slides.reader import SlideReader
    from cervical_tf.slides.tile_log import TileLog

RAY_PIN = "ray[data]==2.60.0"
INSTALL = f"pip install -r requirements-ray.txt (or pip install '{RAY_PIN}')"
MAX_TASK_RETRIES = 3  # per item, after its actor died; then Ray gives up and the item is reported
OPEN_SLIDES = 2  # slide readers an actor keeps open (tiles of one slide mostly arrive together)
OPEN_LOGS = 16  # tiles.jsonl files the driver keeps open while results arrive
_ADDRESS = re.compile(r"^(local|auto|[\w.\-]+:\d+)$")


def require_ray() -> Any:
    """The `ray` module with Ray Data, or a DataError naming the pip command that installs it."""
    try:
        import ray
        import ray.data  # Ray Data is the part used; `ray` alone lacks its dependencies
    except ImportError as error:
        raise DataError(f"--ray needs Ray Data, which is not installed ({error}); {INSTALL}") from error
    return ray


@dataclass(frozen=True)
class FieldItem:
    """One image: decode, detect with `run` (Predictor.predict's options), overlay to `overlay_path`."""

    path: Path
    overlay_path: Path
    run: dict


@dataclass(frozen=True)
class TileItem:
    """One tile of a slide, planned by the driver (`slides.detect.slide_tiles`)."""

    slide: Path
    tile: Tile
    plan: ReadPlan
    level_size: tuple[int, int]
    options: SlideOptions


@dataclass(frozen=True)
class ItemResult:
    """What an actor sends back for one item: `value` (Detections of a field, RawDetections of a
    tile) or `error` (the DataError's message); `started` (Unix time) and `seconds` spent on it in the
    actor; the actor's `pid` and its peak resident memory so far, `peak_mb`."""

    value: Any = None
    error: str | None = None
    started: float = 0.0
    seconds: float = 0.0
    pid: int = 0
    peak_mb: float = 0.0


class ModelActor:
    """A Ray Data actor: loads the export once, then runs items one by one (`__call__` takes a batch
    {"index": int64 [n], "item": pickled FieldItem/TileItem [n]} and returns {"index", "result":
    pickled ItemResult [n]})."""

    def __init__(self, model: str, threads: int = 1, cwd: str | None = None) -> None:
        """`threads`: TensorFlow's intra- and inter-op threads (the actor's CPUs); `cwd`: the driver's
        working folder, entered when this node has it, so relative image paths name the same files
        (and their results and errors the same names) as on the driver."""
        import tensorflow as tf

        if cwd is not None and os.path.isdir(cwd):
            os.chdir(cwd)

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        from cervical_tf.inference.predictor import Predictor

        self.predictor = Predictor.load(Path(model))
        self._slides: OrderedDict[tuple[Path, float | None], SlideReader] = OrderedDict()

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        results = [pickle.dumps(self._run(pickle.loads(payload))) for payload in batch["item"]]
        return {"index": np.asarray(batch["index"]), "result": np.asarray(results, dtype=object)}

    def _run(self, item: FieldItem | TileItem) -> ItemResult:
        from cervical_tf.inference.predict_images import predict_field
        from cervical_tf.slides.detect import detect_tile

        started, start = time.time(), time.perf_counter()
        try:
            if isinstance(item, FieldItem):
                value = predict_field(self.predictor, item.path, item.overlay_path, item.run)
            else:
                reader = self._reader(item.slide, item.options.mpp)
                value = detect_tile(
                    self.predictor, reader, item.tile, item.plan, item.level_size, item.options
                )
        except DataError as error:
            return ItemResult(None, str(error), started, time.perf_counter() - start, os.getpid(), _peak_mb())
        return ItemResult(value, None, started, time.perf_counter() - start, os.getpid(), _peak_mb())

    def _reader(self, path: Path, mpp: float | None) -> SlideReader:
        from cervical_tf.slides.reader import open_slide

        key = (path, mpp)
        if key not in self._slides:
            while len(self._slides) >= OPEN_SLIDES:
                self._slides.popitem(last=False)[1].close()
            self._slides[key] = open_slide(path, mpp)
        self._slides.move_to_end(key)
        return self._slides[key]


class RayResults(NamedTuple):
    """What RayPool.detect returns: `fields` (per field, its Detections or the DataError that skipped
    it) and `planned` (each slide path's tiles plan, for predict_slides to finish the slide with)."""

    fields: list[tuple[Path, Detections | DataError]]
    planned: dict[Path, SlideTiles]


@dataclass
class RayPool:
    """Ray Data runs on the connected cluster with `actors` ModelActors of `threads` CPUs each.
    `last_results` and `last_seconds`: the last run's ItemResults and wall time, for bench/scale.py."""

    model: Path
    actors: int
    threads: int = 1
    last_results: list[ItemResult] = field(default_factory=list)
    last_seconds: float = 0.0

    @classmethod
    def connect(cls, address: str, model: Path, actors: int | None = None, threads: int = 1) -> RayPool:
        """Join Ray at `address` ("local": a new local instance; "auto" or the head's "HOST:PORT": the
        cluster this machine is a node of), or the Ray this process already started. `actors`:
        default one per `threads` CPUs of the cluster.

        "ray://HOST:PORT" (Ray Client) is refused: Ray Data's executor needs a driver on a node
        (ray-project/ray#48682); run `predict --ray auto` on a node."""
        ray = require_ray()
        if address.startswith("ray://"):
            raise DataError(
                f"--ray {address}: Ray Data does not run through Ray Client (ray://); run predict on a node "
                "of the cluster (the head, or a machine that joined with `ray start --address HEAD:6379`) "
                "with --ray auto"
            )
        if not _ADDRESS.match(address):
            raise DataError(
                f"--ray: expected no address, auto or HOST:PORT (the head's), got {address!r} (an image "
                "right after --ray is taken as its address: put --ray before another flag)"
            )
        if not ray.is_initialized():
            local = {"include_dashboard": False} if address == "local" else {}
            try:
                ray.init(address=address, **local)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise DataError(
                    f"--ray {address}: cannot connect to Ray: {error} (start a cluster with "
                    "`ray start --head`, or give --ray no address for a local Ray)"
                ) from error
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = actors if actors is not None else max(1, cpus // threads)
        print(f"ray: {count} actor(s) of {threads} CPU on a cluster of {cpus} CPU", file=sys.stderr)
        return cls(Path(model).resolve(), count, threads)

    def detect(
        self,
        predictor: Predictor,
        slides: list[tuple[Path, str]],
        output: Path,
        options: SlideOptions,
        fields: list[tuple[Path, Path]],
        run: dict,
    ) -> RayResults:
        """Run the batch's work on one actor pool: per (image path, overlay path) of `fields` in order,
        its Detections or the DataError that skipped it (the actors write the overlays), and each
        slide's plan.

        Slides: each (slide, folder name)'s tissue tiles that OUTPUT/<folder>/tiles.jsonl does not
        have yet are detected and appended there as they come back, for plain `predict` to finish
        the slide from, with the plan made here (`RayResults.planned`, not made twice). A slide that
        cannot be opened or planned is left to it (it reports the slide); a tile that fails stays out
        of the log (it is retried there, and reported)."""
        from cervical_tf.slides.detect import slide_tiles
        from cervical_tf.slides.reader import SlideError, open_slide
        from cervical_tf.slides.tile_log import TILE_LOG

        logs = _TileLogs()
        payloads: list[FieldItem | TileItem] = []
        owners: list[Path] = []  # the tiles.jsonl of each tile item
        planned: dict[Path, SlideTiles] = {}
        for path, name in slides:
            try:
                with open_slide(path, options.mpp) as reader:
                    work = slide_tiles(predictor, reader, options)
            except SlideError:
                continue
            planned[Path(path)] = work
            log_path = Path(output) / name / TILE_LOG
            done = logs.done(log_path, work.settings)
            todo = [tile for tile in work.wanted if tile.index not in done]
            slide = Path(path).resolve()
            payloads.extend(TileItem(slide, tile, work.plan, work.level_size, options) for tile in todo)
            owners.extend([log_path] * len(todo))
        first_field = len(payloads)
        payloads.extend(FieldItem(Path(path), Path(overlay).resolve(), run) for path, overlay in fields)

        def record(index: int, result: ItemResult) -> None:
            if index < first_field and result.error is None:
                logs.append(owners[index], payloads[index].tile.index, result.value)

        try:
            results, failure = self._map(payloads, record)
        finally:
            logs.close()
        if failure and any(index not in results for index in range(first_field)):
            print(f"ray: {failure}; the tiles it did not finish are run here", file=sys.stderr)
        found: list[tuple[Path, Detections | DataError]] = []
        for index, (path, _) in enumerate(fields, start=first_field):
            result = results.get(index)
            if result is None:
                found.append((path, DataError(f"{path}: not finished on Ray: {failure}")))
            elif result.error is not None:
                found.append((path, DataError(result.error)))
            else:
                found.append((path, result.value))
        return RayResults(found, planned)

    def _map(
        self, payloads: list[FieldItem] | list[TileItem], on_result: Any = None
    ) -> tuple[dict[int, ItemResult], str | None]:
        """Run `payloads` on the actors: ({index: ItemResult} of the items that came back, None or
        why Ray stopped). `on_result(index, result)` is called as each one arrives."""
        ray = require_ray()
        results: dict[int, ItemResult] = {}
        self.last_results, self.last_seconds = [], 0.0
        if not payloads:
            return results, None
        start = time.perf_counter()
        rows = [{"index": index, "item": pickle.dumps(item)} for index, item in enumerate(payloads)]
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for max_task_retries yet; its `**ray_remote_args` are
            # deprecated for 2.64, and requirements-ray.txt pins 2.60.
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                ModelActor,
                fn_constructor_kwargs={"model": str(self.model), "threads": self.threads, "cwd": os.getcwd()},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(self.actors, len(payloads))),
                num_cpus=self.threads,
                runtime_env={"env_vars": _quiet_tensorflow()},
                max_restarts=-1,
                max_task_retries=MAX_TASK_RETRIES,
            )
        failure = None
        try:
            for row in dataset.iter_rows():
                index, result = int(row["index"]), pickle.loads(row["result"])
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
        except Exception as error:  # Ray gave up (retries spent, cluster lost): report, never drop
            failure = f"Ray stopped after {len(results)} of {len(payloads)} item(s): {error}"
        self.last_results = [results[index] for index in sorted(results)]
        self.last_seconds = time.perf_counter() - start
        return results, failure


class _TileLogs:
    """The slides' tiles.jsonl, at most OPEN_LOGS of them open at a time: a batch of thousands of
    slides would otherwise hold a file per slide. A log closed early is opened again (and re-read)
    when another of its tiles arrives."""

    def __init__(self) -> None:
        self._settings: dict[Path, dict] = {}
        self._open: OrderedDict[Path, TileLog] = OrderedDict()

    def done(self, path: Path, settings: dict) -> set[int]:
        """The tiles already in `path` for a run with `settings` (a log of other settings restarts)."""
        from cervical_tf.slides.tile_log import TileLog

        log = TileLog(path, settings)
        log.close()
        self._settings[path] = settings
        return set(log.done)

    def append(self, path: Path, index: int, raw: RawDetections) -> None:
        from cervical_tf.slides.tile_log import TileLog

        if path not in self._open:
            while len(self._open) >= OPEN_LOGS:
                self._open.popitem(last=False)[1].close()
            self._open[path] = TileLog(path, self._settings[path])
        self._open.move_to_end(path)
        self._open[path].append(index, raw)

    def close(self) -> None:
        for log in self._open.values():
            log.close()
        self._open.clear()


def _quiet_tensorflow() -> dict[str, str]:
    """The driver's TF_CPP_MIN_LOG_LEVEL for the actors (the CLI sets 2: no C++ info lines)."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    return {"TF_CPP_MIN_LOG_LEVEL": level} if level is not None else {}


def _peak_mb() -> float:
    """This process's peak resident memory in MB (Linux reports KB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
