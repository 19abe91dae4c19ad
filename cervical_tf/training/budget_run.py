"""The `--minutes` training loop on official.vision's Orbit controller (the plan: budget.py).

Orbit's `train_and_evaluate` trains to a step count fixed before it starts; here the count is
decided after calibration, revised as the run goes and checked against the clock before every
loop, so the loop below drives the controller's public `train(steps)` and `evaluate(steps)`
itself, one Orbit loop at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from cervical_tf.training import budget
from cervical_tf.training.budget import Plan, TimeBudget


class BudgetedTraining:
    """Calibrates, fits the schedule to the planned steps, then trains to them or to the deadline."""

    def __init__(
        self,
        time_budget: TimeBudget,
        params,
        experiment_for_steps: Callable[[int], object],
        model_dir: Path,
        terminal: TextIO,
    ) -> None:
        self._budget = time_budget
        self._params = params
        self._experiment_for_steps = experiment_for_steps  # load_experiment with --num_train_steps N
        self._model_dir = model_dir
        self._terminal = terminal
        self._validate = bool(params.task.validation_data.input_path)
        self.plan: Plan | None = time_budget.plan
        self._evaluation_seconds = self.plan.seconds_per_evaluation if self.plan else 0.0
        self._window = (0, 0.0)  # steps and seconds trained since the last plan: its speed
        self._timed = (0, 0.0)  # the same over the whole run, but for its first (tracing) loop
        self._replans: list[tuple[int, int]] = []  # (at step, new N)
        self._evaluated: tuple[int, dict] | None = None  # the last evaluation's step and logs

    def total_steps(self) -> int | None:
        """N once planned; None while calibrating (the progress line's total)."""
        return self.plan.steps if self.plan else None

    def run(self, runner) -> dict:
        """Train on `runner` (an OrbitExperimentRunner) within the budget; the final evaluation's logs."""
        controller, loop = runner.controller, self._params.trainer.steps_per_loop
        first_step = step = int(runner.trainer.global_step.numpy())
        if self.plan is not None and step >= self.plan.steps:
            print(f"already trained the planned {self.plan.steps} steps", file=self._terminal, flush=True)
            return {}
        resumed = self.plan is not None  # a resumed run keeps its N: no revision (budget.py)
        if self.plan is None:
            step = self._calibrate(runner, step)
        assert self.plan is not None
        start_of_training = step
        rate, stopped_early = self.plan.steps_per_second, False
        interval = self._params.trainer.validation_interval
        while step < self.plan.steps:
            if not resumed and step >= self._next_revision(start_of_training):
                self._revise(runner, step)
            target = min(self.plan.steps, (step // loop + 1) * loop)
            if self._validate:  # Orbit's loops end at evaluations too
                target = min(target, (step // interval + 1) * interval)
            seconds_left = self._budget.deadline - self._final_evaluation() - time.monotonic()
            affordable = math.floor(seconds_left * rate)
            if affordable < 1:
                stopped_early = True
                break
            target = min(target, step + affordable)
            seconds = budget.timed(
                lambda target=target: controller.train(target, checkpoint_at_completion=False)
            )
            rate = (target - step) / seconds
            self._count(target - step, seconds)
            step = target
            if self._validate and step % interval == 0 and step < self.plan.steps:
                self._evaluate(controller, step)
        controller.save_checkpoint()
        logs = self._evaluate(controller, step) if self._validate else {}
        self._report(first_step, step, stopped_early)
        return logs or {}

    def _calibrate(self, runner, step: int) -> int:
        """Two loops with the config's schedule and one evaluation, timed; then the first plan."""
        controller = runner.controller
        loop = min(self._params.trainer.steps_per_loop, budget.CALIBRATION_STEPS)
        if self._budget.max_steps is not None:  # two loops, and still at most max_steps
            loop = min(loop, (self._budget.max_steps - step) // 2)
        first = budget.timed(lambda: controller.train(step + loop, checkpoint_at_completion=False))
        second = budget.timed(lambda: controller.train(step + 2 * loop, checkpoint_at_completion=False))
        step += 2 * loop
        self._count(loop, second)
        if self._validate:  # what one costs here, tracing its graph included: a real evaluation
            self._evaluate(controller, step)
        tracing = max(0.0, first - second)  # and the input pipeline's start: again for the new schedule
        rate = loop / second
        steps, evaluations = self._plan_from(step, rate, tracing)
        self.plan = Plan(
            self._budget.minutes, steps, round(rate, 4), step, evaluations, 0.0, round(tracing, 1)
        )
        self._use(runner, steps, rate, evaluations)
        print(
            f"calibrated: {rate:.2f} steps/s, {tracing:.0f} s of graph tracing"
            + (f", {self._evaluation_seconds:.0f} s per evaluation" if self._validate else "")
            + f"; planned {steps} steps and {evaluations} evaluation(s) in {self._budget.minutes:g} min "
            f"(learning-rate schedule fitted to {steps} steps: {budget.PLAN_NAME}, params.yaml)",
            file=self._terminal,
            flush=True,
        )
        if steps == step:
            print(
                f"warning: --minutes {self._budget.minutes:g} leaves no time to train beyond these {step} "
                "steps on this machine (building the model and tracing its graphs take part of the budget); "
                "give more minutes",
                file=self._terminal,
                flush=True,
            )
        return step

    def _revise(self, runner, step: int) -> None:
        """Plan again with the speed of the last stretch; refit the schedule if N moves by >2 %."""
        assert self.plan is not None
        trained, seconds = self._window
        self._window = (0, 0.0)
        rate = trained / seconds if seconds else self.plan.steps_per_second
        steps, evaluations = self._plan_from(step, rate, self.plan.tracing_seconds)
        # No time left to train (steps == step) is the guard's to say: a schedule fitted now is too late.
        if steps > step and abs(steps - self.plan.steps) > budget.REVISION_TOLERANCE * self.plan.steps:
            self._use(runner, steps, rate, evaluations)
            print(
                f"re-planned at step {step}: {steps} steps ({rate:.2f} steps/s since the last plan)",
                file=self._terminal,
                flush=True,
            )
        self._replans.append((step, self.plan.steps))

    def _plan_from(self, step: int, rate: float, tracing: float) -> tuple[int, int]:
        interval = self._params.trainer.validation_interval if self._validate else None
        seconds_left = self._budget.deadline - time.monotonic() - tracing  # the training graph's new trace
        return budget.plan_steps(
            step, seconds_left, rate, self._evaluation_seconds, interval, self._budget.max_steps
        )

    def _use(self, runner, steps: int, rate: float, evaluations: int) -> None:
        """Fit the schedule to `steps` (params.yaml as --num_train_steps writes it) and record the plan."""
        from official.core import train_utils

        assert self.plan is not None
        fitted = self._experiment_for_steps(steps)
        _use_schedule(runner.trainer, fitted)
        train_utils.serialize_config(fitted, str(self._model_dir))
        self.plan = replace(
            self.plan,
            steps=steps,
            steps_per_second=round(rate, 4),
            evaluations=evaluations,
            seconds_per_evaluation=round(self._evaluation_seconds, 1),
        )
        budget.write_plan(self._model_dir, self.plan)

    def _next_revision(self, start: int) -> int:
        """Plans are revised after a quarter, a half and three quarters of the steps after calibration."""
        assert self.plan is not None
        done = len(self._replans)
        if done >= budget.REVISIONS:
            return self.plan.steps
        return start + math.ceil((done + 1) * (self.plan.steps - start) / (budget.REVISIONS + 1))

    def _count(self, steps: int, seconds: float) -> None:
        self._window = (self._window[0] + steps, self._window[1] + seconds)
        self._timed = (self._timed[0] + steps, self._timed[1] + seconds)

    def _evaluate(self, controller, step: int) -> dict:
        """Evaluate the model at `step`, once: a plan with no steps beyond calibration ends where the
        calibration's evaluation already scored it."""
        if self._evaluated is not None and self._evaluated[0] == step:
            return self._evaluated[1]
        began = time.monotonic()
        logs = controller.evaluate(self._params.trainer.validation_steps)
        self._evaluation_seconds = time.monotonic() - began  # the latest: the model's state changes it
        self._evaluated = (step, logs)
        return logs

    def _final_evaluation(self) -> float:
        """Seconds kept for the final evaluation: the last one measured, and the margin."""
        return self._evaluation_seconds * (1 + budget.MARGIN) if self._validate else 0.0

    def _report(self, first_step: int, step: int, early: bool) -> None:
        assert self.plan is not None
        elapsed = time.monotonic() - self._budget.started
        trained, speed = step - first_step, self._timed[0] / self._timed[1] if self._timed[1] else 0.0
        print(
            f"trained {trained} steps in {elapsed / 60:.1f} min ({speed:.2f} steps/s; step {step} of "
            f"{self.plan.steps}, budget {self._budget.minutes:g} min)",
            file=self._terminal,
            flush=True,
        )
        if early:
            print(
                f"stopped at the deadline at step {step} of {self.plan.steps}: this machine slowed down "
                "after the last plan, so the learning rate has not finished its decay; the same command "
                "continues the run to its end",
                file=self._terminal,
                flush=True,
            )
        budget.record_run(
            self._model_dir,
            {
                "minutes": self._budget.minutes,
                "from_step": first_step,
                "to_step": step,
                "seconds": round(elapsed, 1),
                "steps_per_second": round(speed, 4),
                "replans": self._replans,
                "final_evaluation_seconds": round(self._evaluation_seconds, 1),
                "stopped_at_deadline": early,
            },
        )


def _use_schedule(trainer, params) -> None:
    """Give the optimizer `params`' learning-rate schedule. The training graph holds the schedule it
    was traced with, so Orbit's StandardTrainer is told to trace a new one at its next loop."""
    from official.modeling import optimization

    factory = optimization.OptimizerFactory(params.trainer.optimizer_config)
    trainer.optimizer.learning_rate = factory.build_learning_rate()
    trainer._train_loop_fn = None  # StandardTrainer.train() builds and traces the loop when None
