"""`cervical-tf demo` (= `make demo`): the flags; `cervical_tf/demo.py` runs the steps."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from cervical_tf import demo


def add_parser(verbs: argparse._SubParsersAction, run_verb: Callable[[list[str]], int]) -> None:
    """Register `demo`; `run_verb` (`cervical-tf`'s main) runs each step as the user would."""
    parser = verbs.add_parser(
        "demo",
        help="run the whole job on the built-in synthetic sample",
        description="Generate the sample, convert it, train the demo config, export, evaluate on the test "
        "split and predict on the test images.",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("demo_output"), help="folder for everything (demo_output)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=demo.DEMO_MINUTES,
        help=f"the whole demo's time budget ({demo.DEMO_MINUTES:g}); training gets what the other steps "
        f"leave (train --minutes): {demo.DEMO_STEPS} steps, or the fewer that fit on this machine",
    )
    parser.set_defaults(handler=lambda args: demo.run(args.output, args.minutes, run_verb))
