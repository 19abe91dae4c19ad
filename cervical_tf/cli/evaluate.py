"""`cervical-tf evaluate`: the flags; `evaluation/evaluate.py` does the work."""

from __future__ import annotations

import argparse
from pathlib import Path

from cervical_tf.boxes import EVALUATE_AGNOSTIC_NMS
from cervical_tf.cli.predict import add_run_flags, run_options


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Register `evaluate` on the `cervical-tf` subparsers, with `handler=run`."""
    parser = verbs.add_parser(
        "evaluate",
        help="COCO AP, PR curves, confusion matrix and abnormal-cell screening metrics of an exported model",
        description="Predict on annotated images and write REPORT_DIR/report.json, report.md and plots.",
    )
    parser.add_argument("--model", type=Path, required=True, help="exported SavedModel folder (EXPORT_DIR)")
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="TFRecord glob(s) of a conversion, e.g. 'OUT/test-*.tfrecord' (quoted), or a COCO GT JSON",
    )
    parser.add_argument(
        "--images", type=Path, help="image folder of a COCO JSON --data (default: the JSON's folder)"
    )
    parser.add_argument("--output", type=Path, required=True, help="report folder (REPORT_DIR)")
    parser.add_argument(
        "--abnormal",
        help="comma-separated abnormal class names (default: Koilocytotic,Dyskeratotic for SIPaKMeD, "
        "every class but NILM for Bethesda labels, else none)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.5,
        help="score at which a detection counts for the confusion matrix and image-level calls (default 0.5)",
    )
    add_run_flags(parser, agnostic_nms=EVALUATE_AGNOSTIC_NMS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from cervical_tf.evaluation.evaluate import evaluate_model

    evaluate_model(
        args.model,
        args.data,
        args.output,
        images=args.images,
        abnormal_names=args.abnormal,
        min_score=args.min_score,
        **run_options(args),
    )
