"""`cervical-tf train` (= `python -m cervical_tf.model_main_tf2`): the TF OD API's model_main_tf2 flags.

Without --checkpoint_dir it trains (resuming from the latest checkpoint in --model_dir) and, when
the config has validation data, evaluates at the config's validation_interval. With
--checkpoint_dir it evaluates each checkpoint that appears there, writing results to --model_dir,
until --eval_timeout seconds pass without a new one or the last training step is evaluated.
With --worker_hosts (or TF_CONFIG) it is one worker of several training one model together
(training/cluster.py).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.errors import DataError

if TYPE_CHECKING:
    from cervical_tf.training.budget import TimeBudget
    from cervical_tf.training.cluster import Worker


def add_parser(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "train",
        help="train (and evaluate) a Faster R-CNN config on official.vision",
        description="Train a pipeline_configs/*.yaml experiment; resumes from the latest checkpoint in "
        "--model_dir. Watch it with `tensorboard --logdir MODEL_DIR`.",
    )
    add_model_main_flags(parser)
    parser.set_defaults(handler=run)


def add_model_main_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the OD API's model_main_tf2.py, plus --data, --params_override, --init_checkpoint."""
    parser.add_argument("--pipeline_config_path", type=Path, required=True, help="experiment YAML")
    parser.add_argument(
        "--model_dir", type=Path, required=True, help="checkpoints, params.yaml, TensorBoard logs"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="folder written by `cervical-tf convert`: sets the "
        "train/val files, COCO ground truth and num_classes",
    )
    parser.add_argument(
        "--num_train_steps",
        type=int,
        help="overrides trainer.train_steps and fits the learning-rate schedule to it (decay steps and "
        "boundaries scale; --params_override trainer.train_steps=N changes the steps alone)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        help="train to a time budget instead of a step count: measures this machine's speed, then fits "
        "the steps and the learning-rate schedule to the minutes left (evaluations included) and saves "
        "the last checkpoint; with --num_train_steps N, at most N steps; a resumed run keeps its first "
        "run's steps (MODEL_DIR/budget.json)",
    )
    parser.add_argument("--checkpoint_every_n", type=int, help="overrides trainer.checkpoint_interval")
    parser.add_argument(
        "--checkpoint_dir", type=Path, help="evaluate the checkpoints written to this folder as they appear"
    )
    parser.add_argument(
        "--eval_timeout",
        type=int,
        default=3600,
        help="with --checkpoint_dir: seconds to wait for a new checkpoint (3600)",
    )
    parser.add_argument(
        "--sample_1_of_n_eval_examples",
        type=int,
        default=1,
        help="evaluate 1/N of the validation examples (the first ones: official.vision's "
        "input pipeline cannot skip; its COCO evaluator scores only the evaluated images)",
    )
    parser.add_argument("--params_override", help="YAML/JSON text, a YAML file, or dotted 'a.b=1,c.d=x'")
    parser.add_argument(
        "--init_checkpoint", help="checkpoint to initialise from (e.g. an ImageNet ResNet-50)"
    )
    parser.add_argument(
        "--alsologtostderr",
        action="store_true",
        help="also show official.vision's and TensorFlow's own log lines",
    )
    parser.add_argument(
        "--worker_hosts",
        help="train on several workers (runtime.distribution_strategy: multi_worker_mirrored): every "
        "worker's host:port, comma-separated, the same list on each; start one process per worker, each "
        "with its --task_index; they wait for each other. The chief (index 0) alone writes MODEL_DIR; "
        "the others write to a temporary folder they print and resume from the chief's checkpoints "
        "(MODEL_DIR must be a folder every machine sees). Instead of these two flags, TensorFlow's "
        "TF_CONFIG environment variable is read as it is",
    )
    parser.add_argument(
        "--task_index", type=int, help="with --worker_hosts: this worker's place in that list (0: the chief)"
    )
    parser.add_argument(
        "--validation_images",
        type=int,
        default=3,
        help="validation images drawn in TensorBoard at each evaluation (3)",
    )


def run(args: argparse.Namespace) -> None:
    from cervical_tf.training import cluster, runner
    from cervical_tf.training.anchors import report_anchors
    from cervical_tf.training.config import ConfigRequest, label_map_for, load_experiment
    from cervical_tf.training.schedule import fitted_to_steps

    worker = cluster.join_cluster(args.worker_hosts, args.task_index)
    _check_cluster_flags(args, worker)
    time_budget = _time_budget(args)  # first: the budget counts from here
    planned_steps = time_budget.plan.steps if time_budget and time_budget.plan else None
    request = ConfigRequest(
        pipeline_config_path=args.pipeline_config_path,
        data_dir=args.data,
        params_override=args.params_override,
        init_checkpoint=args.init_checkpoint,
        num_train_steps=args.num_train_steps if time_budget is None else planned_steps,
        eval_timeout=args.eval_timeout if args.checkpoint_dir else None,
        checkpoint_every_n=args.checkpoint_every_n,
        sample_1_of_n_eval_examples=args.sample_1_of_n_eval_examples,
        workers=worker.count,
    )
    params = load_experiment(request)
    cluster.check_strategy(params, worker)
    output_dir = cluster.write_dir(args.model_dir, worker)  # a worker other than the chief: its own folder
    if worker.count > 1:
        print(f"{worker.name()}: writes to {output_dir}")
    if time_budget is not None:  # refuse a schedule without an end now, not after calibration
        fitted_to_steps(params, params.trainer.train_steps, "--minutes")
    report_anchors(params, args.data, output_dir)  # the training boxes' fit; anchors.json
    has_validation = bool(params.task.validation_data.input_path)
    if args.checkpoint_dir:
        if not has_validation:
            raise DataError("--checkpoint_dir evaluates checkpoints, but the config has no validation data")
        mode = "continuous_eval"
    else:
        mode = "train_and_eval" if has_validation else "train"
    logs = runner.run(
        params,
        runner.TrainRequest(
            output_dir,
            mode,
            args.checkpoint_dir,
            label_map_for(params, args.data),
            args.validation_images,
            args.alsologtostderr,
            time_budget,
            lambda steps: load_experiment(dataclasses.replace(request, num_train_steps=steps)),
            chief_model_dir=None if worker.is_chief else args.model_dir,
        ),
    )
    if not worker.is_chief:
        print(
            f"{worker.name()}: trained; the chief wrote the model to {args.model_dir}, "
            f"this worker {output_dir}"
        )
        return
    print(f"model directory: {args.model_dir}  (tensorboard --logdir {args.model_dir})")
    if logs:
        print(
            "last evaluation: "
            + "  ".join(f"{key} {float(logs[key]):.3f}" for key in ("AP", "AP50") if key in logs)
        )


def _check_cluster_flags(args: argparse.Namespace, worker: Worker) -> None:
    """What several workers cannot do (yet): a time budget, and evaluating as a member of the cluster."""
    if worker.count == 1:
        return
    if args.minutes is not None:
        raise DataError(
            f"--minutes with {worker.count} workers: each worker would measure its own speed and plan its "
            "own steps, but all must train the same steps together; give --num_train_steps instead"
        )
    if args.checkpoint_dir:
        raise DataError(
            "--checkpoint_dir evaluates checkpoints in one process: run it without --worker_hosts/TF_CONFIG "
            "(e.g. beside the cluster, --checkpoint_dir on the chief's MODEL_DIR)"
        )


def _time_budget(args: argparse.Namespace) -> TimeBudget | None:
    """--minutes as a TimeBudget (None without it); --num_train_steps is then the most it may train."""
    from cervical_tf.training import budget

    if args.minutes is None:
        return None
    if args.checkpoint_dir:
        raise DataError(
            "--minutes budgets a training run; --checkpoint_dir evaluates another run's checkpoints: drop one"
        )
    return budget.start(args.minutes, args.model_dir, args.num_train_steps)  # N: at most N steps
