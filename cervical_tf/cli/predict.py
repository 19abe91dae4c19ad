"""`cervical-tf predict`: the flags; `inference/predict_images.py` does the work.

TensorFlow is imported inside `run`, so `cervical-tf --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cervical_tf.boxes import AGNOSTIC_NMS


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Register the `predict` verb on the `cervical-tf` subparsers."""
    parser = verbs.add_parser(
        "predict",
        help="detect cells in images with an exported model",
        description=(
            "Run EXPORT_DIR (written by `cervical-tf export`) on IMAGES and write detections.json, "
            "detections.csv, detections.geojson (QuPath), coco_results.json and overlays/*.png to RESULTS. "
            "Whole slides among IMAGES (SVS, NDPI, MRXS, SCN, DICOM, tiled or OME TIFF) are read tile by "
            "tile at the model's pixel size, each into RESULTS/<slide>/ (detections.geojson in level-0 "
            "pixels, detections.csv, slide_report.json/.md with the slide score, gallery.png/.json of the "
            "top abnormal cells, tiles.jsonl: a rerun resumes); RESULTS/slides_ranked.csv/.md rank the "
            "slides, most suspicious first; slides that fail are listed in RESULTS/slides_failed.csv and "
            "last in the ranking, and make the exit status 2."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, metavar="EXPORT_DIR", help="the exported model")
    parser.add_argument(
        "--output", type=Path, required=True, metavar="RESULTS", help="folder for the results"
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.5,
        metavar="S",
        help="keep detections scoring at least this (default 0.5)",
    )
    parser.add_argument(
        "--max-detections",
        type=int,
        default=100,
        metavar="N",
        help="keep at most this many per image (default 100)",
    )
    add_run_flags(parser)
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        metavar="UM",
        help="slides: microns per level-0 pixel, replacing the slide's metadata (needed when the slide has "
        "none and the model card records the training pixel size)",
    )
    parser.add_argument(
        "--tissue-mask",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="slides: skip tiles without tissue (saturation above Otsu's threshold on a thumbnail) "
        "(default: on)",
    )
    parser.add_argument(
        "--abnormal",
        metavar="NAMES",
        help="slides: comma-separated abnormal class names, whose top-10 scores make the slide score and "
        "whose best cells fill the gallery (default: Koilocytotic,Dyskeratotic for SIPaKMeD, every class "
        "but NILM for Bethesda labels, else none: no slide score)",
    )
    parser.add_argument(
        "--gallery",
        type=int,
        default=16,
        metavar="K",
        help="slides: the gallery shows the K highest-scoring abnormal cells (default 16; 0: no gallery)",
    )
    parser.add_argument(
        "--coco-gt",
        type=Path,
        metavar="PATH",
        help="a folder written by `cervical-tf convert`, or one of its *_coco.json: coco_results.json then "
        "uses its image ids (each image matched by the end of its path against file_name) and category ids "
        "(by class name), so pycocotools scores it against that file; an image it does not list is an "
        "error (default: image ids 1..N in argument order, label-map category ids)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="spread the images and the slides' tiles over Ray actors, one model each; the same output "
        "files (no ADDRESS: a local Ray instance on this machine's CPUs; `auto` or the head's HOST:6379: "
        "the cluster this machine is a node of, whose nodes must see the model, the inputs and RESULTS at "
        "the same paths). Needs `pip install -r requirements-ray.txt`",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders or glob patterns")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from cervical_tf.inference.predict_images import predict_images

    predict_images(
        args.model,
        args.output,
        args.images,
        min_score=args.min_score,
        max_detections=args.max_detections,
        coco_gt=args.coco_gt,
        mpp=args.mpp,
        tissue_mask=args.tissue_mask,
        abnormal=args.abnormal,
        gallery=args.gallery,
        ray=args.ray,
        **run_options(args),
    )


def add_run_flags(parser: argparse.ArgumentParser, agnostic_nms: bool = AGNOSTIC_NMS) -> None:
    """--tile, --overlap and --agnostic-nms: how the model runs, shared by predict and evaluate."""
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="T",
        help="run images larger than T px in overlapping T x T tiles (default: whole images; slides: "
        "the model's input size from its model card, else 1024)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=128,
        metavar="PX",
        help="tile overlap in px; at least the largest cell's size, so every cell is whole in some tile "
        "(default 128)",
    )
    parser.add_argument(
        "--agnostic-nms",
        action=argparse.BooleanOptionalAction,
        default=agnostic_nms,
        help="one label per cell: suppress overlapping boxes of other classes too (IoU > 0.5), as "
        f"Ultralytics' agnostic_nms (default: {'on' if agnostic_nms else 'off'}; chosen on CRIC, "
        "bench/README.md)",
    )


def run_options(args: argparse.Namespace) -> dict:
    """The keyword arguments `add_run_flags` parsed, for predict_images and evaluate_model."""
    return {"tile": args.tile, "overlap": args.overlap, "agnostic_nms": args.agnostic_nms}
