"""`cervical-tf serve`: parse the flags, load the models, run uvicorn.

FastAPI, uvicorn and TensorFlow are imported inside `run`, so `cervical-tf --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from cervical_tf.boxes import AGNOSTIC_NMS
from cervical_tf.errors import DataError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # it becomes part of the URL


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Register the `serve` verb on the `cervical-tf` subparsers."""
    parser = verbs.add_parser(
        "serve",
        help="serve exported models over HTTP (TF Serving's REST API) with a web viewer, and whole slides",
        description=(
            "Serve exported models: TF Serving's REST API (/v1/models/NAME, /metadata, :predict), "
            "/v1/detect (upload an image, get detections) and the web viewer at /. With --slides DIR, "
            "also the slides of DIR in a zoomable viewer at /slides.html with predict's detections and "
            "gallery from --slide-results. Give --model, --slides, or both."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]EXPORT_DIR",
        help="an exported model, named NAME or by its folder name; repeat for several (the first is "
        "/v1/detect's default); optional with --slides",
    )
    parser.add_argument(
        "--slides",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve the slides in DIR (its files, not its subfolders; nothing outside DIR is ever "
        "served) to the slide viewer at /slides.html",
    )
    parser.add_argument(
        "--slide-results",
        type=Path,
        default=None,
        metavar="RESULTS",
        help="predict's --output folder for the slides of --slides: each slide's detections.geojson, "
        "gallery.json/.png and slide_report.json in RESULTS/<slide>/ (without it, slides only)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501, TF Serving's REST port)")
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=50.0,
        metavar="MB",
        help="largest /v1/detect upload (default 50)",
    )
    parser.add_argument(
        "--max-predict-mb",
        type=float,
        default=50.0,
        metavar="MB",
        help="largest :predict JSON body; parsed JSON takes ~8x its size in memory (default 50)",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=100_000_000,
        metavar="N",
        help="largest image, width x height, checked before decoding (default 100000000)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a request may take from its arrival: its body, the wait for a slot and its model "
        "calls, which are then stopped (408 for a body still arriving, else 503; default 60)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=1,
        metavar="N",
        help="model calls running at once (default 1: one call already uses every core)",
    )
    parser.add_argument(
        "--max-tiles",
        type=int,
        default=256,
        metavar="N",
        help="model calls one /v1/detect request may ask for with tile and overlap, counted from the "
        "image header; more is refused with 413 (default 256)",
    )
    parser.add_argument(
        "--max-concurrent-parses",
        type=int,
        default=1,
        metavar="N",
        help=":predict JSON bodies parsed at once (default 1)",
    )
    parser.add_argument(
        "--agnostic-nms",
        action=argparse.BooleanOptionalAction,
        default=AGNOSTIC_NMS,
        help="/v1/detect's default when the query has no agnostic_nms: one label per cell, as predict "
        f"(default: {'on' if AGNOSTIC_NMS else 'off'})",
    )
    parser.add_argument(
        "--abnormal",
        default=None,
        metavar="NAME,...",
        help="abnormal class names (default: Koilocytotic,Dyskeratotic for SIPaKMeD, "
        "every class but NILM for Bethesda)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Load every model (DataError if one is not a valid export), then serve until interrupted."""
    from cervical_tf.serve.limits import MEGABYTE, ServeLimits

    if args.slide_results is not None and args.slides is None:
        raise DataError(
            "--slide-results RESULTS goes with --slides DIR: the folder of the slides it describes"
        )
    if not args.model and args.slides is None:
        raise DataError("serve: nothing to serve: give --model EXPORT_DIR, --slides DIR, or both")
    models = parse_models(args.model)
    limits = ServeLimits(
        max_upload_bytes=round(args.max_upload_mb * MEGABYTE),
        max_image_pixels=args.max_image_pixels,
        request_timeout_s=args.request_timeout,
        max_concurrent=args.max_concurrent,
        max_tiles=args.max_tiles,
        max_predict_bytes=round(args.max_predict_mb * MEGABYTE),
        max_concurrent_parses=args.max_concurrent_parses,
    )
    from cervical_tf.serve.slide_folder import SlideFolder  # no TensorFlow: a wrong folder fails first

    slides = None if args.slides is None else SlideFolder(args.slides, args.slide_results)
    # The flags and folders are checked; now the heavy imports (TensorFlow comes with the app).
    from cervical_tf.serve.app import create_app
    from cervical_tf.serve.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(models, limits, args.abnormal, args.agnostic_nms, slides)
    base = f"http://{args.host}:{args.port}"
    for name, path in models.items():
        print(f"serving {name} ({path}) at {base}/v1/models/{name}", flush=True)
    if models:
        print(f"web viewer: {base}/", flush=True)
    if slides is not None:
        results = f", detections from {slides.results}" if slides.results else ", no --slide-results"
        count = len(slides.slides())
        print(f"slide viewer: {base}/slides.html ({count} slide(s) in {slides.root}{results})", flush=True)
    serve(app, args.host, args.port)


def parse_models(items: list[str]) -> dict[str, Path]:
    """--model values -> {name: export folder}; `NAME=PATH` or `PATH` (named by its folder name)."""
    models: dict[str, Path] = {}
    for item in items:
        name, separator, path_text = item.partition("=")
        if not separator or not MODEL_NAME.match(name):
            name, path_text = Path(item).resolve().name, item
        if not MODEL_NAME.match(name):
            raise DataError(
                f"--model {item}: name {name!r} must be letters, digits, '.', '_' or '-'; use NAME=PATH"
            )
        if name in models:
            raise DataError(f"--model {item}: the name {name!r} is given twice; name them with NAME=PATH")
        models[name] = Path(path_text)
    return models
