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
        help=f"training time budget; sets the steps at {demo.DEMO_STEPS_PER_SECOND} steps/s "
        "(default: the demo config's 500 steps, about 6 minutes on 2 cores)",
    )
    parser.set_defaults(handler=lambda args: demo.run(args.output, args.minutes, run_verb))
