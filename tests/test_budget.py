"""`train --minutes`: the plan (how many steps and evaluations fit), the resume rule and the flags.

The training itself (calibration, fitted schedule, deadline, last checkpoint) runs in
test_model_pipeline.py on a tiny model.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import tensorflow as tf

from cervical_tf.cli import main
from cervical_tf.errors import DataError
from cervical_tf.training import budget
from cervical_tf.training.budget import Plan, evaluation_steps, plan_steps

CONFIG = Path(__file__).resolve().parents[1] / "pipeline_configs" / "faster_rcnn_lite0_fpn_512_demo.yaml"


def test_without_validation_the_steps_fill_the_time_less_the_margin() -> None:
    steps, evaluations = plan_steps(40, 1000.0, 2.0, 30.0, validation_interval=None)
    assert (steps, evaluations) == (40 + 1800, 0)  # 1000 s x 0.9 x 2 steps/s


def test_the_final_evaluation_is_taken_off_the_training_time() -> None:
    steps, evaluations = plan_steps(40, 1000.0, 2.0, 100.0, validation_interval=100000)
    assert (steps, evaluations) == (40 + 1620, 1)  # (1000 - 100) s x 0.9 x 2


def test_every_evaluation_the_interval_asks_for_is_taken_off() -> None:
    """At 1 step/s, 1000 s and 50 s per evaluation every 200 steps: one evaluation would leave
    time for 895 steps and 5 evaluations; five leave 675 s, 715 steps, evaluated 4 times."""
    steps, evaluations = plan_steps(40, 1000.0, 1.0, 50.0, validation_interval=200)
    assert (steps, evaluations) == (715, 4)
    assert evaluation_steps(40, 715, 200) == [200, 400, 600, 715]


def test_num_train_steps_caps_what_the_minutes_would_allow() -> None:
    """`--minutes 10 --num_train_steps 500`: a fast machine stops at 500 steps, early; a slow one
    plans the fewer steps its minutes allow."""
    assert plan_steps(40, 600.0, 5.0, 10.0, 1000, max_steps=500) == (500, 1)
    assert plan_steps(40, 600.0, 0.5, 10.0, 1000, max_steps=500) == (40 + 265, 1)  # 590 s x 0.9 x 0.5


def test_a_spent_budget_trains_no_further_and_still_evaluates() -> None:
    assert plan_steps(40, -5.0, 2.0, 10.0, validation_interval=500) == (40, 1)


def test_evaluations_come_at_multiples_of_the_interval_and_at_the_end() -> None:
    assert evaluation_steps(0, 400, 400) == [400]
    assert evaluation_steps(400, 900, 200) == [600, 800, 900]
    assert evaluation_steps(0, 400, None) == []


def test_a_new_model_dir_starts_a_new_plan(tmp_path: Path) -> None:
    started = budget.start(7.5, tmp_path / "model")
    assert started.plan is None and started.deadline == pytest.approx(started.started + 450)


def test_a_resumed_run_keeps_its_recorded_plan(tmp_path: Path) -> None:
    tf.train.Checkpoint(step=tf.Variable(1)).save(str(tmp_path / "ckpt"))  # ckpt-1
    plan = Plan(7.5, 480, 1.2, 40, 1, 12.0, 9.0)
    budget.write_plan(tmp_path, plan)
    budget.record_run(tmp_path, {"from_step": 0, "to_step": 1})
    assert budget.start(3, tmp_path).plan == plan


def test_a_run_trained_without_minutes_cannot_continue_with_them(tmp_path: Path) -> None:
    tf.train.Checkpoint(step=tf.Variable(1)).save(str(tmp_path / "ckpt"))
    with pytest.raises(
        DataError, match=r"--model_dir .* without --minutes; continue it with --num_train_steps"
    ):
        budget.start(5, tmp_path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--minutes", "0"], "--minutes 0.0: expected a positive number"),
        (
            ["--minutes", "5", "--num_train_steps", "0"],
            "--num_train_steps 0 with --minutes: expected at least 2",
        ),
        (["--minutes", "5", "--checkpoint_dir", "elsewhere"], "--checkpoint_dir evaluates"),
    ],
)
def test_minutes_refuses_what_it_cannot_go_with(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    command = ["train", "--pipeline_config_path", str(CONFIG), "--model_dir", str(tmp_path)]
    assert main([*command, *flags]) == 2
    assert message in capsys.readouterr().err


def test_minutes_refuses_a_schedule_without_an_end_before_building_anything(tmp_path: Path, capsys) -> None:
    endless = json.dumps(
        {
            "trainer": {
                "optimizer_config": {
                    "learning_rate": {"type": "power", "power": {"initial_learning_rate": 0.01}}
                }
            }
        }
    )
    command = ["train", "--pipeline_config_path", str(CONFIG), "--model_dir", str(tmp_path / "model")]
    assert main([*command, "--minutes", "5", "--params_override", endless]) == 2
    assert "--minutes: the learning-rate schedule 'power' has no length" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_the_demo_refuses_a_budget_too_short_for_its_steps(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--output", str(tmp_path / "demo"), "--minutes", "3"]) == 2
    assert "--minutes 3: the demo needs at least" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # refused before generating anything


def test_a_plan_with_no_steps_after_calibration_evaluates_its_checkpoint_once(tmp_path: Path) -> None:
    """--num_train_steps 4 with --minutes: calibration trains the 4 steps and evaluates step 4; the
    final evaluation is that one, not a second run over the same checkpoint."""
    from types import SimpleNamespace

    from cervical_tf.training.budget_run import BudgetedTraining
    from cervical_tf.training.config import ConfigRequest, load_experiment

    params = load_experiment(
        ConfigRequest(CONFIG, params_override="trainer.steps_per_loop=2,task.validation_data.input_path=val")
    )
    calls: list[str] = []
    step = tf.Variable(0, dtype=tf.int64)

    def train(target: int, checkpoint_at_completion: bool) -> None:
        calls.append(f"train to {target}")
        step.assign(target)

    controller = SimpleNamespace(
        train=train,
        evaluate=lambda steps: calls.append(f"evaluate {int(step.numpy())}") or {"AP50": 0.5},
        save_checkpoint=lambda: calls.append("save"),
    )
    runner = SimpleNamespace(
        controller=controller, trainer=SimpleNamespace(global_step=step, optimizer=SimpleNamespace())
    )
    training = BudgetedTraining(
        budget.start(5, tmp_path, max_steps=4),
        params,
        lambda steps: params,
        tmp_path,
        terminal=io.StringIO(),
    )
    assert training.run(runner) == {"AP50": 0.5}
    assert calls == ["train to 2", "train to 4", "evaluate 4", "save"]
