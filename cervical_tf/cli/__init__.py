"""`cervical-tf VERB ...`: one verb per job. This package only parses flags; the rooms do the work."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence

from cervical_tf.cli import demo, evaluate, export, predict, serve, train
from cervical_tf.errors import DataError
from tfrecords_gen import cli as data_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cervical-tf",
        description="Find and classify cervical cells in Pap smear images (Faster R-CNN, official.vision).",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    data_cli.register(verbs)
    train.add_parser(verbs)
    export.add_parser(verbs)
    predict.add_parser(verbs)
    evaluate.add_parser(verbs)
    serve.add_parser(verbs)
    demo.add_parser(verbs, run_verb=main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; bad input exits with status 2 and a message naming the file and the fix."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--alsologtostderr" not in argv:
        # Set before anything imports TensorFlow: its C++ logging reads this once, at import.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    _suggest_verb(parser, argv)
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except DataError as error:
        print(f"cervical-tf {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cervical-tf {args.verb}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    return 0


def _suggest_verb(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Answer a mistyped verb with the closest ones, as argparse alone only lists them all."""
    verbs = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ).choices
    if argv and not argv[0].startswith("-") and argv[0] not in verbs:
        close = difflib.get_close_matches(argv[0], list(verbs), n=3)
        if close:
            parser.error(f"unknown verb {argv[0]!r}; did you mean {' or '.join(close)}?")


if __name__ == "__main__":
    sys.exit(main())
