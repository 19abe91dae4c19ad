"""The data verbs of `cervical-tf`: convert, sample, stats (argument parsing and reporting only)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.readers import READERS
from tfrecords_gen.records import Problem


def register(verbs: argparse._SubParsersAction) -> None:
    """Add convert, sample and stats to the `cervical-tf` parser."""
    convert = verbs.add_parser(
        "convert",
        help="annotations -> validated, leakage-free TFRecord splits",
        description="Read annotations, check them against the images, split by image group "
        "(stratified by class, seeded) and write TFRecords, label_map.pbtxt, COCO JSON and stats.",
    )
    convert.add_argument("--format", required=True, choices=tuple(READERS))
    convert.add_argument(
        "--input",
        required=True,
        type=Path,
        help="data set folder (sipakmed, yolo) or annotation file/folder (others)",
    )
    convert.add_argument(
        "--images", type=Path, help="image folder, where images are not beside the annotations"
    )
    convert.add_argument("--output", required=True, type=Path, help="folder to write (replaced whole)")
    convert.add_argument("--val", type=float, default=0.15, help="fraction of images for validation (0.15)")
    convert.add_argument("--test", type=float, default=0.15, help="fraction of images for test (0.15)")
    convert.add_argument("--folds", type=int, help="k-fold: write OUTPUT/fold-1 .. fold-K (val = that fold)")
    convert.add_argument("--seed", type=int, default=0, help="split seed (0)")
    convert.add_argument(
        "--splits", type=Path, help="reuse the split manifest (splits.csv) of an earlier run"
    )
    convert.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail: report every problem and write nothing (default); "
        "skip: leave bad items out and list them in OUTPUT/rejected.csv",
    )
    convert.add_argument(
        "--box-size",
        type=float,
        default=100.0,
        help="cric: side in pixels of the box around each nucleus point (100)",
    )
    convert.add_argument(
        "--sipakmed-region",
        choices=("cytoplasm", "nucleus"),
        default="cytoplasm",
        help="sipakmed: which boundary gives a cell's box (cytoplasm)",
    )
    convert.add_argument(
        "--keep-negatives",
        action="store_true",
        help="keep images without annotations as negative images instead of reporting them",
    )
    convert.add_argument(
        "--label-map",
        type=Path,
        help="fixed label_map.pbtxt: its ids are used and other classes are reported",
    )
    convert.add_argument(
        "--group-pattern",
        type=re.compile,
        help="regex on the image path; its first group (or the match) is the leakage group, "
        r"e.g. '^(slide\d+)_'",
    )
    convert.add_argument("--workers", type=int, help="processes for image checks and encoding (all cores)")
    convert.add_argument(
        "--mpp",
        type=float,
        metavar="UM",
        help="microns per pixel of the annotated images, recorded in dataset_stats.json; train carries it "
        "into MODEL_DIR and export into the model card, so predict reads slides at this pixel size "
        "(default: unknown, slides are read at full resolution)",
    )
    convert.set_defaults(handler=convert_command)

    sample = verbs.add_parser(
        "sample",
        help="generate synthetic Pap smear images in SIPaKMeD's layout",
        description="Write synthetic Papanicolaou-stained cluster images with SIPaKMeD's folders and "
        ".dat boundary files, so that `convert --format sipakmed` reads them.",
    )
    sample.add_argument("--out", required=True, type=Path)
    sample.add_argument("--images", type=int, default=50, help="number of images, spread over 5 classes (50)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--width", type=int, default=1024)
    sample.add_argument("--height", type=int, default=768)
    sample.add_argument(
        "--label-fraction",
        type=float,
        default=1.0,
        help="below 1, leave some cells unannotated and add cells of other types, "
        "like SIPaKMeD's incomplete labels (1.0)",
    )
    sample.set_defaults(handler=sample_command)

    stats = verbs.add_parser("stats", help="print the statistics table of a converted data set")
    stats.add_argument("path", type=Path, help="a folder written by `convert`, or its dataset_stats.json")
    stats.set_defaults(handler=stats_command)


def convert_command(args: argparse.Namespace) -> None:
    from tfrecords_gen.convert import ConvertRequest, convert

    started = time.perf_counter()
    request = ConvertRequest(
        **{key: value for key, value in vars(args).items() if key not in ("verb", "handler")}
    )
    outcome = convert(request)
    _report_problems(outcome.problems)
    if outcome.written is None:
        fatal = sum(problem.fatal for problem in outcome.problems)
        raise DataError(
            f"{fatal} problem(s) in the input; nothing was written. Fix them, or pass "
            "--on-error skip to leave the bad items out (they are listed in rejected.csv)"
        )
    seconds = time.perf_counter() - started
    from tfrecords_gen.stats import load_stats

    for split, numbers in load_stats(outcome.written.out_dir)["splits"].items():
        classes = ", ".join(f"{label} {count}" for label, count in numbers["classes"].items())
        print(f"{split}: {numbers['images']} images, {numbers['boxes']} boxes ({classes})")
    written = outcome.written
    print(
        f"wrote {len(written.files)} files to {written.out_dir}/ "
        f"({written.images} images in {seconds:.1f} s, {written.images / seconds:.1f} images/s)"
    )
    print(f"per-class box sizes: cervical-tf stats {written.out_dir}")
    print(_pixel_size_line(request.mpp))


def _pixel_size_line(pixel_size_um: float | None) -> str:
    if pixel_size_um is None:
        return "pixel size: unknown (no --mpp): a model trained on this reads slides at full resolution"
    return f"pixel size: {pixel_size_um:g} µm per pixel (--mpp), recorded in dataset_stats.json"


def _report_problems(problems: list[Problem]) -> None:
    if not problems:
        return
    for problem in problems:
        print(("error: " if problem.fatal else "warning: ") + str(problem), file=sys.stderr)
    counts = Counter(problem.kind for problem in problems)
    print(
        "problems by kind: " + ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())),
        file=sys.stderr,
    )


def sample_command(args: argparse.Namespace) -> None:
    from tfrecords_gen.sample import SampleSpec, generate_sample

    try:
        spec = SampleSpec(
            images=args.images,
            seed=args.seed,
            width=args.width,
            height=args.height,
            label_fraction=args.label_fraction,
        )
        summary = generate_sample(args.out, spec)
    except (ValueError, FileExistsError) as error:
        raise DataError(str(error)) from error
    cells = ", ".join(f"{label} {count}" for label, count in summary.cells.items())
    print(
        f"wrote {summary.images} images with {sum(summary.cells.values())} annotated cells ({cells}) "
        f"to {summary.out_dir}/"
    )
    print(f"next: cervical-tf convert --format sipakmed --input {summary.out_dir} --output OUT")


def stats_command(args: argparse.Namespace) -> None:
    from tfrecords_gen.stats import PIXEL_SIZE, load_stats, stats_table

    stats = load_stats(args.path)
    print(stats_table(stats))
    print(_pixel_size_line(stats.get(PIXEL_SIZE)))
