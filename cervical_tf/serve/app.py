"""The FastAPI app: TF Serving's REST API, /v1/detect for the web viewer, health checks, the viewer.

The models are loaded (and run once, so the first request pays no tracing) in `create_app`, before
the server opens its port: a bad export stops `cervical-tf serve` with a message, never a half-up
server. Models run through `Predictor` only, as in `cervical-tf predict`, in `WorkerSlots`' worker
threads, each request within its `Job` (deadline, disconnect, shutdown; `app.state.jobs` holds
them for `server.serve`). Refusals, failures and the log line per request: see `refusals`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from cervical_tf.boxes import AGNOSTIC_NMS
from cervical_tf.errors import DataError
from cervical_tf.inference import outputs
from cervical_tf.inference.abnormal import abnormal_classes
from cervical_tf.inference.detections import Detections
from cervical_tf.inference.predictor import PredictionStopped, Predictor, validate_options
from cervical_tf.serve import tf_serving, tf_serving_request
from cervical_tf.serve.jobs import Job, Jobs, read_in_time, stop_on_disconnect
from cervical_tf.serve.limits import (
    PREDICT_FLAG,
    RequestError,
    ServeLimits,
    check_image,
    check_tiles,
    decode_image,
    read_body,
    read_upload,
)
from cervical_tf.serve.refusals import add_error_handling
from cervical_tf.serve.slide_folder import SlideFolder
from cervical_tf.serve.slide_routes import add_slide_routes
from cervical_tf.serve.slots import WorkerSlots

logger = logging.getLogger("cervical_tf.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
DETECT_FORMATS = ("json", "geojson")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what the endpoints say about it: its signature and abnormal classes."""

    name: str
    predictor: Predictor
    signature: dict
    abnormal: frozenset[str]
    chosen_by: str


def create_app(
    models: dict[str, Path],
    limits: ServeLimits,
    abnormal: str | None,
    agnostic_nms: bool = AGNOSTIC_NMS,
    slides: SlideFolder | None = None,
) -> FastAPI:
    """The app serving `models` (name -> export folder; the first is /v1/detect's default).

    `abnormal`: --abnormal NAME,... (checked against every model's label map) or None for each
    label map's default. `agnostic_nms`: /v1/detect's default when the query does not say.
    `slides`: the --slides folder, served to the slide viewer (`slide_routes`); with slides and
    no model, `/` opens the slide viewer.
    Sets Pillow's process-wide pixel limit to `limits.max_image_pixels`.
    DataError when a model is not a valid export.
    """
    if not models and slides is None:
        raise DataError("serve: nothing to serve: give --model EXPORT_DIR, --slides DIR, or both")
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    served = load_models(models, abnormal)
    jobs = Jobs()
    model_slots = WorkerSlots(limits.max_concurrent, "model", "--max-concurrent")
    parse_slots = WorkerSlots(limits.max_concurrent_parses, "JSON parsing", "--max-concurrent-parses")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        model_slots.close()
        parse_slots.close()

    app = FastAPI(title="cervical-tf serve", lifespan=lifespan)
    app.state.jobs = jobs
    add_error_handling(app)

    def model(name: str, version: str | None = None) -> ServedModel:
        if name not in served or version not in (None, tf_serving.MODEL_VERSION):
            wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise RequestError(404, f"Servable not found for request: {wanted}")
        return served[name]

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        missing = [name for name in models if name not in served]
        if missing:
            return JSONResponse({"error": f"model(s) not loaded: {', '.join(missing)}"}, status_code=503)
        return JSONResponse({"status": "ready", "models": list(served)})

    @app.get("/v1/models/{name}")
    @app.get("/v1/models/{name}/versions/{version}")
    async def model_status(name: str, version: str | None = None) -> dict:
        model(name, version)
        return tf_serving.status_response()

    @app.get("/v1/models/{name}/metadata")
    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def model_metadata(name: str, version: str | None = None) -> dict:
        chosen = model(name, version)
        # TF Serving's answer as it is, plus the model card beside it: its clients read only their keys.
        card = chosen.predictor.model_card.as_json()
        return tf_serving.metadata_response(name, chosen.signature) | {"model_card": card}

    @app.post("/v1/models/{name}:predict")
    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def predict(request: Request, name: str, version: str | None = None) -> JSONResponse:
        chosen = model(name, version)
        with jobs.start(limits.request_timeout_s) as job:
            body = await read_in_time(job, read_body(request, limits.max_predict_bytes, PREDICT_FLAG))
            async with stop_on_disconnect(request, job):
                parsed = await parse_slots.run(
                    job, lambda: tf_serving_request.parse_predict_request(body, chosen.signature)
                )
                results = await model_slots.run(job, lambda: run_instances(chosen, parsed, job))
        return JSONResponse(tf_serving.predict_response(parsed, results))

    @app.post("/v1/detect")
    @app.post("/v1/models/{name}/detect")
    async def detect(
        request: Request,
        name: str | None = None,
        model_name: str | None = Query(None, alias="model"),
        min_score: float = 0.05,
        tile: int | None = None,
        overlap: int = 128,
        max_detections: int = 100,
        agnostic: bool | None = Query(None, alias="agnostic_nms"),
        output_format: str = Query("json", alias="format"),
    ) -> JSONResponse:
        if not served:
            raise RequestError(404, "no model is served (started with --slides only); add --model EXPORT_DIR")
        chosen = model(name or model_name or next(iter(served)))
        if output_format not in DETECT_FORMATS:
            raise RequestError(
                400, f"format must be one of {', '.join(DETECT_FORMATS)}, got {output_format!r}"
            )
        try:
            validate_options(tile, overlap, max_detections, min_score)
        except DataError as error:  # its message names the CLI flags: name the query parameters
            message = str(error)
            for flag in ("min-score", "max-detections", "tile", "overlap"):
                message = message.replace(f"--{flag}", flag.replace("-", "_"))
            raise RequestError(400, message) from error
        with jobs.start(limits.request_timeout_s) as job:
            filename, data = await read_in_time(job, read_upload(request, limits.max_upload_bytes))
            _, width, height = check_image(data, filename, limits)
            check_tiles(filename, width, height, tile, overlap, limits)

            def run_model() -> Detections:
                image = decode_image(data, filename)
                return chosen.predictor.predict(
                    image,
                    filename,
                    tile=tile,
                    overlap=overlap,
                    max_detections=max_detections,
                    min_score=min_score,
                    agnostic_nms=agnostic_nms if agnostic is None else agnostic,
                    should_stop=job.should_stop,
                )

            async with stop_on_disconnect(request, job):
                detections = await model_slots.run(job, run_model)
        if output_format == "geojson":
            collection = outputs.geojson_collection([detections], chosen.predictor.model_card.as_json())
            return JSONResponse(collection, media_type="application/geo+json")
        return JSONResponse(detect_response(detections, chosen, min_score))

    if slides is not None:
        add_slide_routes(app, slides, STATIC_DIR)

    @app.get("/", include_in_schema=False)
    async def viewer() -> Response:
        if not served:  # slides only: the field viewer needs a model
            return RedirectResponse("/slides.html")
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise RequestError(404, f"the web viewer is not installed ({index} is missing); the API works")
        return FileResponse(index)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    else:
        logger.warning("no web viewer: %s does not exist; serving the API only", STATIC_DIR)
    return app


def load_models(models: dict[str, Path], abnormal: str | None) -> dict[str, ServedModel]:
    """Load and warm up every export once; DataError naming the model that fails."""
    served = {}
    for name, path in models.items():
        predictor = Predictor.load(Path(path))
        try:
            classes, chosen_by = abnormal_classes(abnormal, predictor.labels)
        except DataError as error:
            raise DataError(f"model {name} ({path}): {error}") from error
        started = time.perf_counter()
        predictor.predict(np.zeros((64, 64, 3), dtype=np.uint8), "warm-up")
        served[name] = ServedModel(
            name, predictor, predictor.signature_metadata(), frozenset(classes), chosen_by
        )
        logger.info(
            "model %s loaded from %s: classes %s, abnormal %s (%s); warm-up %.0f ms; %s",
            name,
            path,
            list(predictor.labels.values()),
            sorted(classes),
            chosen_by,
            (time.perf_counter() - started) * 1000,
            predictor.model_card.summary,
        )
        if predictor.model_card.warning:
            logger.warning("model %s was %s", name, predictor.model_card.warning)
    return served


def run_instances(
    model: ServedModel, parsed: tf_serving_request.PredictRequest, job: Job
) -> list[dict[str, np.ndarray]]:
    """Run a :predict request's instances one by one (an export's batch is 1), while `job` allows."""
    results = []
    for inputs in parsed.runs:
        if job.should_stop():
            done = f"{len(results)} of {len(parsed.runs)}"
            raise PredictionStopped(f"{model.name}:predict instances: stopped after {done} model calls")
        try:
            results.append(model.predictor.run_signature(inputs))
        except DataError as error:
            raise RequestError(400, str(error)) from error
    return results


def detect_response(detections: Detections, model: ServedModel, min_score: float) -> dict:
    """/v1/detect's JSON, the shape the web viewer reads (see the README's `serve` section).

    Boxes are original-image pixels [xmin, ymin, xmax, ymax]; `counts` has every class of the
    label map; `abnormal_first` indexes the abnormal detections, highest score first;
    `model_card` is the export's (see `export.model_card`), which the viewer shows.
    """
    entry = outputs.image_entry(detections)
    flags = [label in model.abnormal for label in detections.labels]
    for item, flag in zip(entry["detections"], flags, strict=True):
        item["abnormal"] = flag
    classes = [model.predictor.labels[class_id] for class_id in sorted(model.predictor.labels)]
    counts = dict.fromkeys(classes, 0)
    for label in detections.labels:
        counts[label] += 1
    abnormal_indexes = [index for index, flag in enumerate(flags) if flag]
    return {
        "image": entry["image"],
        "width": entry["width"],
        "height": entry["height"],
        "model": model.name,
        "min_score": min_score,
        "detections": entry["detections"],
        "counts": counts,
        "abnormal": {
            "classes": [name for name in classes if name in model.abnormal],
            "count": len(abnormal_indexes),
            "image_abnormal": bool(abnormal_indexes),
            "chosen_by": model.chosen_by,
        },
        "colors": {
            name: "#{:02x}{:02x}{:02x}".format(*outputs.class_color(class_id))
            for class_id, name in sorted(model.predictor.labels.items())
        },
        "abnormal_first": sorted(abnormal_indexes, key=lambda index: -float(detections.scores[index])),
        "model_card": model.predictor.model_card.as_json(),
    }
