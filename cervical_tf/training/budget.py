"""`train --minutes M`: train to a time budget instead of a step count.

The same config trains at 1.3 steps/s on one 2-core machine and at 0.3 on another, so a step
count is a different wait on each. With a budget the run measures this machine instead:

1. calibration: two short loops with the config's own schedule (its warm-up), then one
   evaluation when the config has validation data; the first loop traces the training graph and
   fills the input pipeline, so only the second is timed, and the evaluation is timed whole;
2. plan: N = the steps that fit in the time left, once the evaluations the config asks for (every
   validation_interval steps and at the end) are set aside, less a 10 % margin;
3. the schedule is fitted to N exactly as `--num_train_steps N` fits it (same params.yaml), the
   training graph is traced again with it, and training goes on to N;
4. after a quarter, a half and three quarters of the steps the plan is revised with the speed
   measured since the last one (a shared machine's speed drifts): when N moves by more than 2 %,
   the schedule is fitted to the new N from that step on, so its decay still ends at the deadline;
5. a guard checks the clock before every loop and stops early if the machine has slowed down,
   keeping the final evaluation's time; the last checkpoint is always saved.

The budget counts from the start of the verb to the end of the final evaluation: model building,
tracing, calibration and every evaluation are inside it. Calibration trains the run's first steps
and its evaluation is a real one (metrics.csv); what it costs is one more trace of the training
graph for the fitted schedule, and one per revision that moves N (a few seconds each).

The plan is kept in MODEL_DIR/budget.json with a record of each run. A run that resumes
(MODEL_DIR has a checkpoint) keeps the planned N and its schedule, so the learning rate goes on
where it stopped, and uses its own minutes as the deadline only: fitting a new N to a new budget
would move the schedule under the steps already trained (a restart of the decay, not a drift).
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
REVISIONS = 3  # the plan is revised after 1/4, 2/4 and 3/4 of the steps after calibration
REVISION_TOLERANCE = 0.02  # a revision that moves N by less keeps the schedule (no retrace)


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
    max_steps: int | None = None  # --num_train_steps with --minutes: at most that many

    @property
    def deadline(self) -> float:
        return self.started + self.minutes * 60


def start(minutes: float, model_dir: Path, max_steps: int | None = None) -> TimeBudget:
    """The budget of this run, from now: a new plan, or the recorded one when MODEL_DIR's run resumes."""
    started = time.monotonic()
    if not minutes > 0:
        raise DataError(f"--minutes {minutes}: expected a positive number of minutes")
    if max_steps is not None and max_steps < 2:
        raise DataError(
            f"--num_train_steps {max_steps} with --minutes: expected at least 2 steps (the speed is "
            "measured over two loops)"
        )
    checkpoint_step = _checkpoint_step(model_dir)
    if checkpoint_step == 0:
        return TimeBudget(minutes, started, max_steps=max_steps)
    plan_path = model_dir / PLAN_NAME
    if not plan_path.is_file():
        raise DataError(
            f"--minutes: --model_dir {model_dir} holds a run of {checkpoint_step} steps trained without "
            "--minutes; continue it with --num_train_steps, or give --minutes a new --model_dir"
        )
    recorded = json.loads(plan_path.read_text())
    recorded.pop("runs", None)
    return TimeBudget(minutes, started, Plan(**recorded), max_steps)


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
    max_steps: int | None = None,
) -> tuple[int, int]:
    """(N, evaluations): the last step and the evaluations from `step` on that fit `seconds_left`.

    `validation_interval` None: no evaluation. Evaluations come every validation_interval steps
    and at N; each one's time is taken off the training time, which keeps a margin of MARGIN.
    N is at most `max_steps` (and never below `step`).
    """
    evaluations = 1 if validation_interval else 0
    while True:
        training_seconds = seconds_left - evaluations * seconds_per_evaluation
        last = step + max(0, math.floor(training_seconds * (1 - MARGIN) * steps_per_second))
        last = max(step, min(last, max_steps)) if max_steps is not None else last
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


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took."""
    began = time.monotonic()
    action()
    return time.monotonic() - began
