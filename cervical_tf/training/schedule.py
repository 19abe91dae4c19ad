"""Fit a config's learning-rate schedule to another number of training steps.

A YAML schedule is written for its `trainer.train_steps` (the CPU recipe: warm-up 200 steps,
cosine over 12000). Changing only the step count (the OD API's --num_train_steps) would stop a
short run before its learning rate has decayed, or run a long one at the schedule's floor; so
`--num_train_steps N` and `--minutes` fit the schedule to N: every step count of the decay
(decay_steps, boundaries, offsets) scales by N / train_steps, and the warm-up keeps its length in
steps (it protects a fresh model's first steps, whatever the run's length) unless that would be
more than a tenth of the run. `--params_override trainer.train_steps=N` still changes the step
count alone, for whoever wants the schedule exactly as written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cervical_tf.errors import DataError

# At most this share of a shortened run is warm-up (or the warm-up's proportional share, if larger).
WARMUP_FRACTION = 0.1
# The step counts of each official.vision learning-rate type (official/modeling/optimization/configs).
LENGTH_FIELDS = {
    "constant": (),
    "cosine": ("decay_steps",),
    "exponential": ("decay_steps",),
    "polynomial": ("decay_steps",),
    "power_linear": ("total_decay_steps",),
    "stepwise": (),
    "step_cosine_with_offset": (),
}
BOUNDARY_TYPES = ("stepwise", "step_cosine_with_offset")
# step^power decays never end: there is no length to fit.
ENDLESS_TYPES = ("power", "power_with_offset")


def fitted_to_steps(params, steps: int, flag: str = "--num_train_steps") -> dict:
    """The override that trains `steps` steps with the config's schedule fitted to them.

    0 steps train nothing (an evaluation-only run): the schedule is left as written.
    """
    if steps < 0:
        raise DataError(f"{flag} {steps}: expected a number of steps >= 0")
    trainer: dict = {"train_steps": steps}
    if steps > 0:
        written_for = params.trainer.train_steps
        if written_for <= 0:
            raise DataError(
                f"{flag}: the config's trainer.train_steps is {written_for}, so its learning-rate "
                "schedule has no length to fit from; set trainer.train_steps in the config"
            )
        trainer["optimizer_config"] = fit_schedule(
            params.trainer.optimizer_config.as_dict(), written_for, steps, flag
        )
    return {"trainer": trainer}


def fit_schedule(optimizer_config: Mapping, from_steps: int, to_steps: int, flag: str) -> dict:
    """`optimizer_config`'s learning_rate and warmup (official.vision's OptimizationConfig as a
    dict), written for `from_steps` steps, fitted to `to_steps`: an override of both."""
    learning_rate = optimizer_config["learning_rate"]
    kind = learning_rate["type"]
    if kind in ENDLESS_TYPES or kind not in LENGTH_FIELDS:
        raise DataError(
            f"{flag}: the learning-rate schedule {kind!r} has no length to fit to a number of steps; "
            f"use one that has ({', '.join(sorted(LENGTH_FIELDS))}), or keep it and set the steps "
            "alone with --params_override trainer.train_steps=N"
        )
    scale = to_steps / from_steps
    fields = dict(learning_rate[kind]) if kind != "constant" else {}
    fitted = {
        name: max(1, round(fields[name] * scale))
        for name in LENGTH_FIELDS[kind]
        if fields.get(name) is not None  # unset: official.vision says so when it builds the schedule
    }
    if "offset" in fields:
        fitted["offset"] = round(fields["offset"] * scale)
    if kind in BOUNDARY_TYPES:
        fitted["boundaries"] = _scaled_boundaries(fields["boundaries"] or [], scale)
    override: dict = {"learning_rate": {kind: fitted}} if fitted else {}
    warmup = optimizer_config.get("warmup") or {}
    if warmup.get("type"):
        warmup_steps = warmup[warmup["type"]]["warmup_steps"] or 0
        override["warmup"] = {warmup["type"]: {"warmup_steps": _warmup(warmup_steps, scale, to_steps)}}
    return override


def _scaled_boundaries(boundaries: list[int], scale: float) -> list[int]:
    """Scaled, still strictly increasing (official's schedules need that), a positive one kept
    positive: a very short run may move a boundary a step later than its share."""
    fitted: list[int] = []
    for boundary in boundaries:
        lowest = fitted[-1] + 1 if fitted else min(boundary, 1)
        fitted.append(max(lowest, round(boundary * scale)))
    return fitted


def _warmup(warmup_steps: int, scale: float, to_steps: int) -> int:
    """The warm-up's own length, at most a tenth of the run, never below its proportional share."""
    if warmup_steps <= 0:
        return warmup_steps
    ceiling = max(round(warmup_steps * scale), math.floor(WARMUP_FRACTION * to_steps), 1)
    return min(warmup_steps, ceiling)
