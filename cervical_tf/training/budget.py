"""`train --minutes M`: train to a time budget instead of a step count.

The same config trains at 1.3 steps/s on one 2-core machine and at 0.3 on another, so a step
count is a different wait on each. With a budget the run measures this machine instead:

1. calibration: two short loops with the config's own schedule (its warm-up); the first traces
   the training graph and fills the input pipeline, so only the second is timed;
2. plan: N = the steps that fit in the time left, once the evaluations the config asks for (every
   validation_interval steps and at the end) are set aside, less a 10 % margin;
3. the schedule is fitted to N exactly as `--num_train_steps N` fits it (same params.yaml), the
   training graph is traced again with it, and training goes on to N;
4. a guard checks the clock before every loop and stops early if the machine has slowed down,
   keeping the final evaluation's time; the last checkpoint is always saved.

The budget counts from the start of the verb to the end of the final evaluation: model building,
tracing, calibration and every evaluation are inside it. Calibration costs no training (its steps
are the run's first steps); what it costs is one more trace of the training graph, a few seconds.
The plan is kept in MODEL_DIR/budget.json. A run that resumes (MODEL_DIR has a checkpoint) keeps
the planned N and its schedule, so the learning rate goes on where it stopped, and uses its own
minutes as the deadline only: measuring again and fitting a new N would change the schedule
under the steps already trained.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.atomic import atomic_path

PLAN_NAME = "budget.json"
CALIBRATION_STEPS = 20  # per calibration loop, at most (fewer when steps_per_loop is smaller)
MARGIN = 0.1  # share of the training time left unplanned: a shared machine's speed varies
# Seconds an evaluation spends per validation image, over the seconds training spends per training
# image, measured as ~0.3 for the demo config (2 cores, 10 and 40 validation images); the rest is
# slack for COCO scoring and the TensorBoard validation images.
EVALUATION_COST = 0.5


@dataclass(frozen=True)
class Plan:
    """What calibration decided; MODEL_DIR/budget.json."""

    minutes: float
    steps: int
    steps_per_second: float
    calibration_steps: int
    evaluations: int
    seconds_per_evaluation: float
    tracing_seconds: float  # the first loop's time beyond the others'


@dataclass(frozen=True)
class TimeBudget:
    """--minutes: the run ends (final evaluation included) `minutes` after `started`."""

    minutes: float
    started: float  # time.monotonic() when the verb started
    plan: Plan | None = None  # a resumed run's, from MODEL_DIR/budget.json

    @property
    def deadline(self) -> float:
        return self.started + self.minutes * 60


def start(minutes: float, model_dir: Path) -> TimeBudget:
    """The budget of this run, from now: a new plan, or the recorded one when MODEL_DIR's run resumes."""
    started = time.monotonic()
    if not minutes > 0:
        raise DataError(f"--minutes {minutes}: expected a positive number of minutes")
    checkpoint_step = _checkpoint_step(model_dir)
    if checkpoint_step == 0:
        return TimeBudget(minutes, started)
    plan_path = model_dir / PLAN_NAME
    if not plan_path.is_file():
        raise DataError(
            f"--minutes: --model_dir {model_dir} holds a run of {checkpoint_step} steps trained without "
            "--minutes; continue it with --num_train_steps, or give --minutes a new --model_dir"
        )
    recorded = json.loads(plan_path.read_text())
    recorded.pop("runs", None)
    return TimeBudget(minutes, started, Plan(**recorded))


def _checkpoint_step(model_dir: Path) -> int:
    """The step of MODEL_DIR's latest checkpoint (its name ends in -STEP), 0 without one."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def plan_steps(
    step: int,
    seconds_left: float,
    steps_per_second: float,
    seconds_per_evaluation: float,
    validation_interval: int | None,
) -> tuple[int, int]:
    """(N, evaluations): the last step and the evaluations from `step` on that fit `seconds_left`.

    `validation_interval` None: no evaluation. Evaluations come every validation_interval steps
    and at N; each one's time is taken off the training time, which keeps a margin of MARGIN.
    """
    evaluations = 1 if validation_interval else 0
    while True:
        training_seconds = seconds_left - evaluations * seconds_per_evaluation
        last = step + max(0, math.floor(training_seconds * (1 - MARGIN) * steps_per_second))
        needed = evaluation_steps(step, last, validation_interval)
        if len(needed) <= evaluations:
            return last, len(needed)
        evaluations = len(needed)


def evaluation_steps(step: int, last: int, validation_interval: int | None) -> list[int]:
    """The steps after `step` at which training evaluates: multiples of the interval, and `last`."""
    if not validation_interval:
        return []
    first = (step // validation_interval + 1) * validation_interval
    return sorted({*range(first, last, validation_interval), last})


def write_plan(model_dir: Path, plan: Plan) -> None:
    with atomic_path(model_dir / PLAN_NAME) as temporary:
        temporary.write_text(json.dumps(asdict(plan), indent=2) + "\n")


def record_run(model_dir: Path, run: dict) -> None:
    """Append this run's outcome (steps, seconds, speed, stopped early or not) to budget.json."""
    path = model_dir / PLAN_NAME
    record = json.loads(path.read_text())
    record["runs"] = [*record.get("runs", []), run]
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")


def evaluation_seconds(validation_images: int, steps_per_second: float, batch_size: int) -> float:
    """The time one evaluation of `validation_images` is expected to take, from the training speed."""
    return validation_images * EVALUATION_COST / (steps_per_second * batch_size)


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took."""
    began = time.monotonic()
    action()
    return time.monotonic() - began
