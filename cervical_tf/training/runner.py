"""Training and evaluation on official.vision's task, trainer and Orbit controller.

`OrbitExperimentRunner` does the work (checkpoints, resume, TensorBoard summaries, COCO
evaluation); the subclass below only adds what cytology users need: a terminal progress line,
metrics.csv, validation images with true and predicted boxes in TensorBoard, and evaluation of a
checkpoint folder other than model_dir (the OD API's --checkpoint_dir). On a worker other than the
chief of a multi_worker_mirrored cluster, model_dir is the worker's own folder and the checkpoints
it resumes from are the chief's (training/cluster.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cervical_tf.errors import DataError
from cervical_tf.training import cluster
from cervical_tf.training.budget import TimeBudget
from cervical_tf.training.logs import LOG_NAME, training_logs
from cervical_tf.training.pixel_size import record_pixel_size
from tfrecords_gen.label_map import read_label_map

MODES = ("train", "train_and_eval", "eval", "continuous_eval")


@dataclass(frozen=True)
class TrainRequest:
    model_dir: Path
    mode: str = "train_and_eval"
    checkpoint_dir: Path | None = None  # evaluate checkpoints from here (model_dir gets the results)
    label_map_path: Path | None = None
    validation_images: int = 3
    also_log_to_terminal: bool = False  # --alsologtostderr: official.vision's own lines on the terminal too
    budget: TimeBudget | None = None  # --minutes: train to a deadline (training/budget.py)
    experiment_for_steps: Callable[[int], object] | None = None  # with budget: the config fitted to N steps
    chief_model_dir: Path | None = None  # a worker other than the chief: resume from the chief's checkpoints


def run(params, request: TrainRequest) -> dict:
    """Run `request.mode` on the locked experiment `params`; returns the last evaluation's metrics.

    The terminal shows the progress line and evaluation summaries; everything else goes to
    MODEL_DIR/train.log (see `logs.training_logs`).
    """
    with training_logs(request.model_dir, request.also_log_to_terminal) as terminal:
        print(f"logs: {request.model_dir / LOG_NAME}", file=terminal, flush=True)
        return _run(params, request, terminal)


def _run(params, request: TrainRequest, terminal: TextIO) -> dict:
    import orbit
    import tensorflow as tf
    from official.common import distribute_utils
    from official.core import train_lib, train_utils

    from cervical_tf.training.actions import MetricsCsv, ProgressLine, ValidationImages
    from cervical_tf.training.budget_run import BudgetedTraining
    from cervical_tf.training.config import augmentation_of
    from cervical_tf.training.task import CellDetectionTask

    if request.mode not in MODES:
        raise DataError(f"mode {request.mode!r}: expected one of {', '.join(MODES)}")
    model_dir = str(request.model_dir)
    if "train" in request.mode:
        train_utils.serialize_config(params, model_dir)  # params.yaml: the resolved config
        if request.label_map_path:
            shutil.copyfile(request.label_map_path, request.model_dir / "label_map.pbtxt")
            record_pixel_size(request.label_map_path.parent, request.model_dir)  # convert --mpp, if given
    strategy = distribute_utils.get_distribution_strategy(
        distribution_strategy=params.runtime.distribution_strategy,
        all_reduce_alg=params.runtime.all_reduce_alg,
        num_gpus=params.runtime.num_gpus,
        tpu_address=params.runtime.tpu,
    )
    if strategy.extended.should_checkpoint != (request.chief_model_dir is None):
        raise DataError(  # cluster.py reads TF_CONFIG as TensorFlow does: a disagreement is a bug here
            f"TensorFlow and cervical-tf disagree on which worker is the chief ({cluster.TF_CONFIG}: "
            f"{os.environ.get(cluster.TF_CONFIG)!r})"
        )
    with strategy.scope():
        task = CellDetectionTask(params.task, logging_dir=model_dir, augmentation=augmentation_of(params))
    label_map = read_label_map(request.label_map_path) if request.label_map_path else {}
    budgeted = None
    if request.budget is not None:
        assert "train" in request.mode and request.experiment_for_steps is not None
        budgeted = BudgetedTraining(
            request.budget, params, request.experiment_for_steps, request.model_dir, terminal
        )
    total_steps = budgeted.total_steps if budgeted else lambda: params.trainer.train_steps
    names = {class_id: name for name, class_id in label_map.items()}

    class CellExperimentRunner(train_lib.OrbitExperimentRunner):
        """Adds our actions (they need the trainer, built in __init__) and reads --checkpoint_dir."""

        def _build_controller(self, trainer, evaluator, **kwargs) -> orbit.Controller:
            train_actions = [ProgressLine(total_steps, self.current_step, terminal)]
            eval_actions = [MetricsCsv(request.model_dir / "metrics.csv", self.current_step, terminal)]
            if request.validation_images and params.task.validation_data.input_path:
                eval_actions.append(
                    ValidationImages(
                        task,
                        self.trainer.model,
                        params,
                        request.model_dir,
                        request.validation_images,
                        self.current_step,
                        names,
                    )
                )
            kwargs["train_actions"] = train_actions if trainer else None
            kwargs["eval_actions"] = eval_actions
            return super()._build_controller(trainer, evaluator, **kwargs)

        def current_step(self) -> int:
            return int(self.trainer.global_step.numpy())  # int() of it fails under multi_worker_mirrored

        def _maybe_build_checkpoint_manager(self):
            if request.chief_model_dir is not None:
                return _WorkerCheckpoints(
                    request.chief_model_dir,
                    self.trainer.checkpoint,
                    directory=model_dir,
                    max_to_keep=1,
                    step_counter=self.trainer.global_step,
                    checkpoint_interval=params.trainer.checkpoint_interval,
                    init_fn=self.trainer.initialize,
                )
            if request.checkpoint_dir is None:
                return super()._maybe_build_checkpoint_manager()
            return tf.train.CheckpointManager(
                self.trainer.checkpoint, directory=str(request.checkpoint_dir), max_to_keep=None
            )

    class _WorkerCheckpoints(tf.train.CheckpointManager):
        """A worker other than the chief saves where the chief does not look (its own folder: TensorFlow
        needs every worker to take part in a save) and resumes from the chief's latest checkpoint."""

        def __init__(self, chief_model_dir: Path, checkpoint, **kwargs) -> None:
            super().__init__(checkpoint, **kwargs)
            # What restore_or_initialize restores; the parent then counts checkpoint_interval from its
            # step exactly as on the chief, so both save (collectively) at the same steps.
            self._latest_checkpoint = tf.train.latest_checkpoint(str(chief_model_dir))

    runner = CellExperimentRunner(
        distribution_strategy=strategy,
        task=task,
        mode=request.mode,
        params=params,
        model_dir=model_dir,
        run_post_eval=False,
    )
    if budgeted:
        with strategy.scope():
            return budgeted.run(runner)
    _, logs = runner.run()
    return logs
