"""Training on several workers: the cluster TensorFlow reads from TF_CONFIG, and where each worker writes.

`runtime.distribution_strategy: multi_worker_mirrored` trains one model on several processes (one
per machine), each holding a full copy of the model; every step each worker takes its share of
the global batch and the gradients are all-reduced, so every copy takes the same step
(TensorFlow's MultiWorkerMirroredStrategy). TensorFlow finds the other workers in the TF_CONFIG
environment variable, `{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
"index": I}}` (a "chief" list may name the chief apart); `--worker_hosts host:port,... --task_index I`
writes it, as official.vision's `distribute_utils.configure_cluster` and its flags of that name do.

The chief (task "chief" when the cluster has one, else worker 0) alone writes MODEL_DIR. Every
other worker writes into a folder of its own under the system's temporary folder: its train.log,
TensorBoard events, params.yaml and the checkpoints TensorFlow makes every worker save (saving
reads variables whose value all workers compute together, so all must save; only the chief's are
kept). To resume, a worker reads the chief's latest checkpoint from MODEL_DIR: on several
machines MODEL_DIR must be a folder every worker sees (NFS, a GCS bucket).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cervical_tf.errors import DataError

TF_CONFIG = "TF_CONFIG"
MULTI_WORKER = "multi_worker_mirrored"


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: worker `index` (0-based, chief first) of `count`."""

    count: int = 1
    index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def name(self) -> str:
        role = "the chief" if self.is_chief else "not the chief"
        return f"worker {self.index + 1} of {self.count} ({role})"


def join_cluster(worker_hosts: str | None, task_index: int | None) -> Worker:
    """This process's place in the cluster; with --worker_hosts, TF_CONFIG is written first.

    Without either (and without TF_CONFIG) the process trains alone: Worker(1, 0).
    """
    if worker_hosts is None:
        if task_index is not None:
            raise DataError(
                "--task_index I needs --worker_hosts host:port,host:port,... (every worker, in order)"
            )
        return _worker_from(os.environ.get(TF_CONFIG), TF_CONFIG)
    if os.environ.get(TF_CONFIG):
        raise DataError(
            f"--worker_hosts and the {TF_CONFIG} environment variable both describe the cluster: give one"
        )
    hosts = [host.strip() for host in worker_hosts.split(",")]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise DataError(f"--worker_hosts: {host!r}: expected host:port, e.g. 10.0.0.2:2222")
    if task_index is None and len(hosts) > 1:
        raise DataError(
            f"--worker_hosts names {len(hosts)} workers: give this one's --task_index (0 to {len(hosts) - 1})"
        )
    index = task_index or 0
    if not 0 <= index < len(hosts):
        raise DataError(
            f"--task_index {index}: expected 0 to {len(hosts) - 1} (--worker_hosts names {len(hosts)})"
        )
    config = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
    os.environ[TF_CONFIG] = config  # read by TensorFlow when the strategy is built
    return _worker_from(config, "--worker_hosts")


def check_strategy(params, worker: Worker) -> None:
    """Refuse a config that would not train as one model on this cluster, before anything is built."""
    runtime, batch = params.runtime, params.task.train_data.global_batch_size
    if worker.count > 1 and runtime.distribution_strategy != MULTI_WORKER:
        raise DataError(
            f"{worker.count} workers, but runtime.distribution_strategy is "
            f"{runtime.distribution_strategy!r}: each worker would train a model of its own; add "
            f"--params_override runtime.distribution_strategy={MULTI_WORKER}"
        )
    devices = max(1, runtime.num_gpus)
    replicas = worker.count * devices
    if replicas > 1 and batch % replicas:
        raise DataError(
            f"task.train_data.global_batch_size {batch} is split over {replicas} replicas "
            f"({worker.count} worker(s) x {devices} device(s)): expected a multiple of {replicas}"
        )


def write_dir(model_dir: Path, worker: Worker) -> Path:
    """Where this worker writes: MODEL_DIR for the chief, a new temporary folder for any other."""
    if worker.is_chief:
        return model_dir
    return Path(tempfile.mkdtemp(prefix=f"cervical-tf-worker{worker.index}-"))


def _worker_from(text: str | None, source: str) -> Worker:
    """This worker from TF_CONFIG's text, placed so that TensorFlow's chief (multi_worker_util.is_chief)
    comes first."""
    if not text:
        return Worker()
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        task_type, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DataError(
            f'{source}: {text!r}: expected {{"cluster": {{"worker": ["host:port", ...]}}, '
            f'"task": {{"type": "worker", "index": I}}}} ({error})'
        ) from error
    if task_type not in ("chief", "worker"):
        raise DataError(
            f"{source}: task type {task_type!r}: `train` runs the chief and workers of "
            f"{MULTI_WORKER}; evaluate a cluster's checkpoints with `train --checkpoint_dir` "
            f"without {TF_CONFIG}"
        )
    members = chiefs if task_type == "chief" else workers
    if not 0 <= index < len(members):
        raise DataError(
            f"{source}: task {task_type} {index}: the cluster lists {len(members)} {task_type}(s)"
        )
    # The chief is the "chief" task if the cluster has one, else worker 0: first either way.
    position = index if task_type == "chief" else len(chiefs) + index
    return Worker(len(chiefs) + len(workers), position)
