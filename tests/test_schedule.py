"""Fitting a learning-rate schedule to a step count: the fitted schedule, built by official.vision
itself, decays over the new length as the written one did over its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from official.modeling.optimization import optimizer_factory
from official.modeling.optimization.configs import optimization_config

from cervical_tf.errors import DataError
from cervical_tf.training.config import ConfigRequest, load_experiment
from cervical_tf.training.schedule import fit_schedule

PIPELINE_CONFIGS = Path(__file__).resolve().parents[1] / "pipeline_configs"
WRITTEN_FOR = 12000
WARMUP = {"type": "linear", "linear": {"warmup_steps": 200, "warmup_learning_rate": 0.001}}
SCHEDULES = {
    "cosine": {"initial_learning_rate": 0.02, "decay_steps": 12000},
    "stepwise": {"boundaries": [8000, 10000], "values": [0.02, 0.002, 0.0002]},
    "polynomial": {"initial_learning_rate": 0.02, "decay_steps": 12000, "end_learning_rate": 0.0002},
    "exponential": {"initial_learning_rate": 0.02, "decay_steps": 4000, "decay_rate": 0.1, "staircase": True},
    "power_linear": {"initial_learning_rate": 0.02, "total_decay_steps": 12000, "power": -0.5},
    "step_cosine_with_offset": {"boundaries": [0, 6000, 12000], "values": [0.02, 0.01, 0.002]},
}


def learning_rate(config: dict):
    """official.vision's schedule (warm-up included) for an optimizer_config dict."""
    factory = optimizer_factory.OptimizerFactory(optimization_config.OptimizationConfig(config))
    schedule = factory.build_learning_rate()
    return lambda step: float(schedule(step)) if callable(schedule) else float(schedule)


def fitted(kind: str, fields: dict, to_steps: int) -> dict:
    written = {"optimizer": {"type": "sgd"}, "learning_rate": {"type": kind, kind: fields}, "warmup": WARMUP}
    config = optimization_config.OptimizationConfig(written)
    config.override(fit_schedule(config.as_dict(), WRITTEN_FOR, to_steps, "--num_train_steps"))
    return written, config.as_dict()


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@pytest.mark.parametrize("to_steps", [600, 30000])
def test_a_fitted_schedule_decays_over_the_new_length(kind: str, to_steps: int) -> None:
    written, fitted_config = fitted(kind, SCHEDULES[kind], to_steps)
    before, after = learning_rate(written), learning_rate(fitted_config)
    # power_linear's step^power part counts absolute steps: only its end (zero) moves with the fit.
    fractions = (0.3, 0.55, 0.85, 0.995) if kind != "power_linear" else ()
    for fraction in fractions:  # the same learning rate at the same fraction of the run
        assert after(round(fraction * to_steps)) == pytest.approx(
            before(round(fraction * WRITTEN_FOR)), rel=0.03, abs=1e-6
        ), fraction
    # The decay completes at the new end (official's step cosine is NaN from its last boundary on).
    assert after(to_steps) == pytest.approx(before(WRITTEN_FOR), rel=1e-3, abs=1e-7, nan_ok=True)
    assert fitted_config["warmup"]["linear"]["warmup_steps"] == (60 if to_steps < WRITTEN_FOR else 200)


def test_the_warm_up_keeps_its_length_unless_it_would_exceed_a_tenth_of_the_run() -> None:
    def warmup(to_steps: int) -> int:
        return fitted("cosine", SCHEDULES["cosine"], to_steps)[1]["warmup"]["linear"]["warmup_steps"]

    assert [warmup(steps) for steps in (12000, 4000, 1500, 300, 5)] == [200, 200, 150, 30, 1]


def test_a_very_short_run_keeps_the_boundaries_strictly_increasing() -> None:
    boundaries = fitted("stepwise", SCHEDULES["stepwise"], 2)[1]["learning_rate"]["stepwise"]["boundaries"]
    assert boundaries == [1, 2]


def test_the_written_length_is_left_unchanged() -> None:
    written, fitted_config = fitted("cosine", SCHEDULES["cosine"], WRITTEN_FOR)
    assert (
        fitted_config["learning_rate"]
        == optimization_config.OptimizationConfig(written).as_dict()["learning_rate"]
    )


@pytest.mark.parametrize("kind", ["power", "power_with_offset"])
def test_a_schedule_without_an_end_is_refused_with_the_way_out(kind: str) -> None:
    with pytest.raises(DataError, match=r"--minutes: .*no length.*trainer.train_steps=N"):
        fitted_config = {"learning_rate": {"type": kind, kind: {"initial_learning_rate": 0.02}}}
        fit_schedule(fitted_config, WRITTEN_FOR, 600, "--minutes")


def test_num_train_steps_fits_the_configs_schedule() -> None:
    """The CPU recipe (cosine over 12000, warm-up 200) and the demo's (drop at 400 of 500)."""
    params = load_experiment(
        ConfigRequest(PIPELINE_CONFIGS / "faster_rcnn_resnet18_fpn_512_cpu.yaml", num_train_steps=600)
    )
    assert params.trainer.train_steps == 600
    assert params.trainer.optimizer_config.learning_rate.cosine.decay_steps == 600
    assert params.trainer.optimizer_config.warmup.linear.warmup_steps == 60
    demo = load_experiment(
        ConfigRequest(PIPELINE_CONFIGS / "faster_rcnn_lite0_fpn_512_demo.yaml", num_train_steps=250)
    )
    assert demo.trainer.optimizer_config.learning_rate.stepwise.boundaries == [200]
    assert demo.trainer.optimizer_config.warmup.linear.warmup_steps == 20
