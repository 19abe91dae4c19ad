"""Several workers train one model (multi_worker_mirrored): the cluster flags, who writes what, resume,
and the loss trajectory against one worker with the same global batch.

The end-to-end test runs real worker processes on 127.0.0.1 ports, on the CPU, for a few steps of
a tiny version of the demo recipe on a generated sample.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_command import train_arguments

from cervical_tf.cli import main
from cervical_tf.errors import DataError
from cervical_tf.training.cluster import TF_CONFIG, Worker, join_cluster
from tfrecords_gen.sample import SampleSpec, generate_sample

# The demo recipe shrunk (256 px, global batch 2) and made deterministic, so that one worker and two
# can be compared step by step: no shuffling and no augmentation (each global batch holds the same two
# images either way: worker i reads records i, i+2, ...), RPN anchors and RoIs not sampled but all
# taken (the samplers would draw different ones in each process), batch norm over the global batch
# (sync BN; two workers hold one image each). And a tenth of the demo's learning rate: at 0.04 the
# rounding differences of a batch split in two grew until, in one run of five, a proposal crossed
# an IoU threshold at step 6 and the losses there were 2.1% apart (0.09% at most in the others).
DETERMINISTIC = {
    "task": {
        "model": {
            "input_size": [256, 256, 3],
            "norm_activation": {"use_sync_bn": True},
            "roi_generator": {"num_proposals": 64},
            # 64 proposals + 100 ground-truth slots (parser.max_num_instances): every RoI is taken
            "roi_sampler": {"num_sampled_rois": 164, "foreground_fraction": 1.0},
        },
        "train_data": {
            "global_batch_size": 2,
            "shuffle_buffer_size": 1,
            "parser": {
                "aug_rand_hflip": False,
                "aug_rand_vflip": False,
                "aug_scale_min": 1.0,
                "aug_scale_max": 1.0,
                "rpn_batch_size_per_im": 8192,  # more than the 4080 anchors of a 256 px image
            },
        },
        "validation_data": {"global_batch_size": 2},
    },
    "trainer": {
        "steps_per_loop": 1,  # the progress line then shows every step's loss
        "summary_interval": 1,
        "checkpoint_interval": 2,
        "validation_interval": 100,  # evaluate at the end of each run only
        "optimizer_config": {"learning_rate": {"stepwise": {"values": [0.004, 0.0004]}}},
    },
}
# The one-worker reference does not evaluate (the cluster's evaluation is what is under test).
NO_VALIDATION = {**DETERMINISTIC["task"], "validation_data": {"input_path": ""}}
ONE_WORKER = {**DETERMINISTIC, "task": NO_VALIDATION, "runtime": {"distribution_strategy": "one_device"}}
TWO_WORKERS = {**DETERMINISTIC, "runtime": {"distribution_strategy": "multi_worker_mirrored"}}
FIRST_STEPS, LAST_STEP = 2, 6
# Largest relative difference allowed between the two runs' loss at a step. Measured (AMD EPYC,
# AVX-512, three runs): at most 2.6e-5; 1% leaves room for other CPUs' rounding and for a rare
# discrete flip. A wrong cluster is far off it: summing the workers' gradients instead of averaging
# them (one worker at twice the rate, from the same checkpoint) gives losses 15-35% apart at steps 4-6.
LOSS_TOLERANCE = 1e-2
PROCESS_TIMEOUT = 600


@pytest.fixture(autouse=True)
def no_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without TF_CONFIG, and what --worker_hosts writes there is undone after it."""
    monkeypatch.setenv(TF_CONFIG, "")
    monkeypatch.delenv(TF_CONFIG)


def test_join_cluster_alone_without_flags_or_tf_config() -> None:
    worker = join_cluster(None, None)
    assert worker == Worker(1, 0) and worker.is_chief


def test_join_cluster_writes_tf_config_from_worker_hosts() -> None:
    worker = join_cluster("10.0.0.1:2222,10.0.0.2:2222", 1)
    assert worker == Worker(2, 1) and not worker.is_chief
    assert json.loads(os.environ[TF_CONFIG]) == {
        "cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
        "task": {"type": "worker", "index": 1},
    }


def test_join_cluster_reads_tf_config_as_tensorflow_does(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    monkeypatch.setenv(TF_CONFIG, json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    worker = join_cluster(None, None)
    assert worker == Worker(3, 1) and not worker.is_chief  # a cluster with a chief: worker 0 is not it
    monkeypatch.setenv(TF_CONFIG, json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    chief = join_cluster(None, None)
    assert chief == Worker(3, 0) and chief.is_chief


@pytest.mark.parametrize(
    ("hosts", "index", "tf_config", "message"),
    [
        ("a:1,b:1", None, None, "give this one's --task_index"),
        ("a:1,b:1", 2, None, "expected 0 to 1"),
        ("a:1,b", 0, None, "'b': expected host:port"),
        (None, 1, None, "--task_index I needs --worker_hosts"),
        (
            "a:1,b:1",
            0,
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
            "give one",
        ),
        (None, None, '{"cluster": {"worker": ["a:1"]}}', "expected {"),
        (None, None, '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "lists 1"),
        (None, None, '{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task type 'ps'"),
    ],
)
def test_join_cluster_refuses_a_cluster_it_cannot_train_on(
    monkeypatch: pytest.MonkeyPatch, hosts, index, tf_config, message
) -> None:
    if tf_config is not None:
        monkeypatch.setenv(TF_CONFIG, tf_config)
    with pytest.raises(DataError, match=re.escape(message)):
        join_cluster(hosts, index)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multi_worker")
    generate_sample(root / "sample", SampleSpec(images=18, width=320, height=256, seed=4), progress=False)
    arguments = ["--format", "sipakmed", "--input", str(root / "sample"), "--output", str(root / "data")]
    assert main(["convert", *arguments, "--val", "0.15", "--test", "0.1"]) == 0
    stats = json.loads((root / "data" / "dataset_stats.json").read_text())
    assert stats["splits"]["train"]["images"] >= 2 * LAST_STEP  # no step reads an image twice
    return root / "data"


def test_train_refuses_minutes_and_a_single_process_strategy_with_several_workers(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cluster = ["--worker_hosts", "127.0.0.1:1,127.0.0.1:2", "--task_index", "0"]
    assert main(_train_arguments(data, tmp_path, ONE_WORKER, LAST_STEP) + cluster) == 2
    assert "--params_override runtime.distribution_strategy=multi_worker_mirrored" in capsys.readouterr().err
    del os.environ[TF_CONFIG]  # written by the first call's --worker_hosts
    assert main([*_train_arguments(data, tmp_path, TWO_WORKERS, LAST_STEP), "--minutes", "1", *cluster]) == 2
    assert "give --num_train_steps instead" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()  # refused before writing anything


def test_two_workers_train_like_one_with_the_same_global_batch(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """One worker trains 2 steps; from that checkpoint, one worker goes on to step 6 and, in a copy of
    it, two workers do (a run started on one machine continues on several, each resuming from the
    chief's checkpoint). Both workers take every step, the chief alone writes MODEL_DIR, the two
    copies of the model end identical, and the losses of steps 3-6 match the one-worker run's."""
    single_dir, chief_dir = tmp_path / "single", tmp_path / "model"
    assert main(_train_arguments(data, single_dir, ONE_WORKER, FIRST_STEPS)) == 0  # in this process
    shutil.copytree(single_dir, chief_dir, ignore=shutil.ignore_patterns("train", "validation", "*.csv"))
    hosts = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    arguments = _train_arguments(data, chief_dir, TWO_WORKERS, LAST_STEP)
    workers = [
        _start([*arguments, "--worker_hosts", hosts, "--task_index", str(index)], tmp_path)
        for index in (0, 1)
    ]
    capsys.readouterr()  # meanwhile, in this process (the workers often wait on each other)
    assert main(_train_arguments(data, single_dir, ONE_WORKER, LAST_STEP)) == 0
    single = capsys.readouterr().out
    chief, worker = _finish(workers)
    for output in (chief, worker):  # both resumed from the chief's checkpoint, and trained to the end
        assert f"step {FIRST_STEPS}/{LAST_STEP} " not in output
        assert f"step {FIRST_STEPS + 1}/{LAST_STEP} " in output and f"step {LAST_STEP}/{LAST_STEP}" in output
    assert _checkpoint_steps(chief_dir)[-1] == LAST_STEP
    written = {path.name for path in chief_dir.iterdir()}
    assert {"params.yaml", "label_map.pbtxt", "metrics.csv", "train.log", "train"} <= written
    assert "sharding: false" in (chief_dir / "params.yaml").read_text()  # each worker evaluates it all
    rows = (chief_dir / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == [str(LAST_STEP)]
    # The other worker wrote only its own folder, where its copy of the model is the chief's, exactly.
    worker_dir = Path(re.search(r"worker 2 of 2 \(not the chief\): writes to (\S+)", worker)[1])
    assert worker_dir.parent == tmp_path / "worker_tmp"
    assert {"train.log", "params.yaml", "metrics.csv", "checkpoint"} <= {
        path.name for path in worker_dir.iterdir()
    }
    _assert_same_variables(chief_dir, worker_dir, LAST_STEP)

    losses = {"two workers": _losses(chief), "one worker": _losses(single)}
    print(json.dumps(losses))  # pytest -s shows them
    for trajectory in losses.values():
        assert sorted(trajectory) == list(range(FIRST_STEPS + 1, LAST_STEP + 1))
    for step, loss in losses["one worker"].items():
        assert losses["two workers"][step] == pytest.approx(loss, rel=LOSS_TOLERANCE), losses


def _finish(processes: list[subprocess.Popen]) -> list[str]:
    """Wait for `processes` to succeed; their terminal output, in order."""
    try:
        outputs = [process.communicate(timeout=PROCESS_TIMEOUT)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    return outputs


def _train_arguments(data: Path, model_dir: Path, override: dict, steps: int) -> list[str]:
    return train_arguments(model_dir, data, json.dumps(override), "--num_train_steps", str(steps))


def _start(arguments: list[str], tmp_path: Path) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if key != TF_CONFIG}
    (tmp_path / "worker_tmp").mkdir(exist_ok=True)
    environment["TMPDIR"] = str(tmp_path / "worker_tmp")  # the other worker's folder goes here
    return subprocess.Popen(
        [sys.executable, "-m", "cervical_tf", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


def _losses(output: str) -> dict[int, float]:
    """The progress line's loss at each step (steps_per_loop 1: the loss of that step's global batch)."""
    return {int(step): float(loss) for step, loss in re.findall(r"step (\d+)/\d+  loss ([\d.]+)", output)}


def _checkpoint_steps(model_dir: Path) -> list[int]:
    return sorted(int(path.name.split("-")[1].split(".")[0]) for path in model_dir.glob("ckpt-*.index"))


def _assert_same_variables(chief_dir: Path, worker_dir: Path, step: int) -> None:
    import tensorflow as tf

    chief = tf.train.load_checkpoint(str(chief_dir / f"ckpt-{step}"))
    worker = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(worker_dir)))
    names = [
        name
        for name, _ in tf.train.list_variables(str(chief_dir / f"ckpt-{step}"))
        if "OBJECT_GRAPH" not in name
    ]
    assert len(names) > 100
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name), worker.get_tensor(name), err_msg=name)
