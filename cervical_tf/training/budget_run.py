"""The `--minutes` training loop on official.vision's Orbit controller (the plan: budget.py).

Orbit's `train_and_evaluate` trains to a step count fixed before it starts; here the count is
decided after two loops and the clock is checked before every loop, so the loop below drives the
controller's public `train(steps)` and `evaluate(steps)` itself, one Orbit loop at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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
        self._experiment_for_steps = experiment_for_steps  # load_experiment with --num_train_steps N
        self._model_dir = model_dir
        self._terminal = terminal
        self._validate = bool(params.task.validation_data.input_path)
        self._images = _validation_images(params) if self._validate else 0
        self._batch = params.task.train_data.global_batch_size
        self._evaluated = False  # the first evaluation traces its graph
        self.plan: Plan | None = time_budget.plan

    def total_steps(self) -> int | None:
        """N once planned; None while calibrating (the progress line's total)."""
        return self.plan.steps if self.plan else None

    def run(self, runner) -> dict:
        """Train on `runner` (an OrbitExperimentRunner) within the budget; the final evaluation's logs."""
        params, controller = runner.params, runner.controller
        first_step = step = int(runner.trainer.global_step.numpy())
        if self.plan is not None and step >= self.plan.steps:
            print(f"already trained the planned {self.plan.steps} steps", file=self._terminal, flush=True)
            return {}
        timed_steps, timed_seconds = 0, 0.0  # training loops, but for the first (tracing) one
        if self.plan is None:
            step, timed_steps, timed_seconds = self._calibrate(runner, step)
        plan = self.plan
        assert plan is not None
        rate, loop = plan.steps_per_second, params.trainer.steps_per_loop
        evaluations = budget.evaluation_steps(step, plan.steps, params.trainer.validation_interval)
        evaluations = evaluations if self._validate else []
        stopped_early = False
        while step < plan.steps:
            target = min([plan.steps, (step // loop + 1) * loop, *(at for at in evaluations if at > step)])
            seconds_left = self._budget.deadline - self._final_evaluation(rate) - time.monotonic()
            affordable = math.floor(seconds_left * rate)
            if affordable < 1:
                stopped_early = True
                break
            target = min(target, step + affordable)
            seconds = budget.timed(
                lambda target=target: controller.train(target, checkpoint_at_completion=False)
            )
            rate = (target - step) / seconds
            timed_steps, timed_seconds, step = timed_steps + target - step, timed_seconds + seconds, target
            if step in evaluations and step < plan.steps:
                self._evaluate(controller, params)
        controller.save_checkpoint()
        evaluation_began = time.monotonic()
        logs = self._evaluate(controller, params) if self._validate else {}
        speed = timed_steps / timed_seconds if timed_seconds else 0.0
        self._report(first_step, step, speed, time.monotonic() - evaluation_began, stopped_early)
        return logs or {}

    def _evaluate(self, controller, params) -> dict:
        self._evaluated = True
        return controller.evaluate(params.trainer.validation_steps)

    def _calibrate(self, runner, step: int) -> tuple[int, int, float]:
        """Two loops with the config's schedule; plan; fit the schedule and the params.yaml to N."""
        from official.core import train_utils

        params, controller = runner.params, runner.controller
        loop = min(params.trainer.steps_per_loop, budget.CALIBRATION_STEPS)
        first = budget.timed(lambda: controller.train(step + loop, checkpoint_at_completion=False))
        second = budget.timed(lambda: controller.train(step + 2 * loop, checkpoint_at_completion=False))
        step, rate = step + 2 * loop, loop / second
        tracing = max(0.0, first - second)  # tracing and the input pipeline's start: again for the new
        # schedule's training graph, and once for the evaluation graph
        per_evaluation = budget.evaluation_seconds(self._images, rate, self._batch)
        seconds_left = self._budget.deadline - time.monotonic() - tracing * (2 if self._validate else 1)
        interval = params.trainer.validation_interval if self._validate else None
        steps, evaluations = budget.plan_steps(step, seconds_left, rate, per_evaluation, interval)
        self.plan = Plan(
            self._budget.minutes,
            steps,
            round(rate, 4),
            step,
            evaluations,
            round(per_evaluation, 1),
            round(tracing, 1),
        )
        fitted = self._experiment_for_steps(steps)
        _use_schedule(runner.trainer, fitted)
        train_utils.serialize_config(fitted, str(self._model_dir))  # what --num_train_steps N writes
        budget.write_plan(self._model_dir, self.plan)
        print(
            f"calibrated: {rate:.2f} steps/s after {tracing:.0f} s of graph tracing; "
            f"planned {steps} steps and {evaluations} evaluation(s) in {self._budget.minutes:g} min "
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
        return step, loop, second

    def _final_evaluation(self, rate: float) -> float:
        """Seconds to keep for the final evaluation at the current training speed."""
        if not self._validate:
            return 0.0
        assert self.plan is not None
        tracing = 0.0 if self._evaluated else self.plan.tracing_seconds
        return budget.evaluation_seconds(self._images, rate, self._batch) + tracing

    def _report(self, first_step: int, step: int, speed: float, evaluation: float, early: bool) -> None:
        assert self.plan is not None
        elapsed = time.monotonic() - self._budget.started
        trained = step - first_step
        print(
            f"trained {trained} steps in {elapsed / 60:.1f} min ({speed:.2f} steps/s; step {step} of "
            f"{self.plan.steps}, budget {self._budget.minutes:g} min)",
            file=self._terminal,
            flush=True,
        )
        if early:
            print(
                f"stopped at the deadline at step {step} of {self.plan.steps}: this machine trained slower "
                f"than the {self.plan.steps_per_second:.2f} steps/s measured at the start, so the learning "
                "rate has not finished its decay; the same command continues the run to its end",
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
                "final_evaluation_seconds": round(evaluation, 1),
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


def _validation_images(params) -> int:
    """How many validation images one evaluation reads (validation_steps batches, or all of them)."""
    import tensorflow as tf

    data = params.task.validation_data
    files = [name for pattern in data.input_path.split(",") for name in tf.io.gfile.glob(pattern)]
    count = int(tf.data.TFRecordDataset(files).reduce(0, lambda total, _: total + 1))
    steps = params.trainer.validation_steps
    return min(count, steps * data.global_batch_size) if steps > 0 else count
