"""End to end on a tiny generated sample: train -> checkpoint -> resume -> export -> clean load -> predict.

Training runs a few steps only: these tests check the mechanics (resume, outputs, signatures,
TensorBoard content), not accuracy, which `make demo` and bench/ measure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from train_command import DEMO_CONFIG, train_arguments

from cervical_tf.cli import main
from cervical_tf.training.pretrained import lite0_checkpoint
from tfrecords_gen.sample import SampleSpec, generate_sample

CONFIG = DEMO_CONFIG
# Shrinks the demo recipe so that a step takes a fraction of a second.
TINY = json.dumps(
    {
        "task": {
            "model": {"input_size": [256, 256, 3]},
            "train_data": {"global_batch_size": 1},
            "validation_data": {"global_batch_size": 1},
        },
        "trainer": {
            "steps_per_loop": 2,
            "summary_interval": 2,
            "checkpoint_interval": 2,
            "validation_interval": 2,
        },
    }
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    generate_sample(root / "sample", SampleSpec(images=10, width=320, height=256, seed=2), progress=False)
    assert (
        main(
            [
                "convert",
                "--format",
                "sipakmed",
                "--input",
                str(root / "sample"),
                "--output",
                str(root / "data"),
                "--val",
                "0.2",
                "--test",
                "0.2",
            ]
        )
        == 0
    )
    return {
        "root": root,
        "sample": root / "sample",
        "data": root / "data",
        "model": root / "model",
        "export": root / "export",
    }


def train(workspace: dict[str, Path], steps: int) -> int:
    return main(train_arguments(workspace["model"], workspace["data"], TINY, "--num_train_steps", str(steps)))


@pytest.fixture(scope="module")
def trained(workspace: dict[str, Path]) -> dict[str, Path]:
    assert train(workspace, 2) == 0
    return workspace


def test_train_writes_a_readable_model_directory(trained: dict[str, Path]) -> None:
    model = trained["model"]
    assert tf.train.latest_checkpoint(str(model)).endswith("ckpt-2")
    assert {"params.yaml", "label_map.pbtxt", "metrics.csv"} <= {path.name for path in model.iterdir()}
    assert "num_classes: 6" in (model / "params.yaml").read_text()


def test_train_resumes_where_it_stopped(trained: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert train(trained, 4) == 0
    printed = capsys.readouterr()
    assert "step 4/4" in printed.out and "step 2/4" not in printed.out  # continued from step 2, not from 0
    assert "evaluation at step 4: AP" in printed.out
    # Orbit's per-loop lines, official.vision's absl lines and pycocotools' prints go to train.log only.
    log = (trained["model"] / "train.log").read_text()
    for noise in ("train | step:", "loading annotations", "Number of trainable params"):
        assert noise not in printed.out + printed.err
        assert noise in log
    assert tf.train.latest_checkpoint(str(trained["model"])).endswith("ckpt-4")
    rows = (trained["model"] / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,AP,AP50,AP75,ARmax100")
    assert [row.split(",")[0] for row in rows[1:]] == ["2", "4"]
    validation_classes = json.loads((trained["data"] / "dataset_stats.json").read_text())["splits"]["val"][
        "classes"
    ]
    assert all(f"{name} AP50" in rows[0] for name in validation_classes)  # per-class AP, by name


def test_train_interrupted_mid_run_continues_from_its_last_checkpoint(
    workspace: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """Stop a long run (Ctrl-C) once it has checkpointed; started again, the step counter goes on."""
    model_dir = workspace["root"] / "interrupted"
    override = json.loads(TINY)
    override["trainer"]["validation_interval"] = 100000  # no evaluation to wait for before Ctrl-C

    def arguments(steps: int) -> list[str]:
        return train_arguments(
            model_dir, workspace["data"], json.dumps(override), "--num_train_steps", str(steps)
        )

    # Ctrl-C's default action, even where this suite runs as a background job (a shell without job
    # control starts those with SIGINT ignored, which Python keeps: no KeyboardInterrupt at all).
    process = subprocess.Popen(
        [sys.executable, "-m", "cervical_tf", *arguments(1000)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for _ in range(600):  # up to 5 minutes for the first checkpoint (every 2 steps)
            if tf.train.latest_checkpoint(str(model_dir)) or process.poll() is not None:
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=600) == 130  # cervical-tf's exit status for an interruption
    finally:
        process.kill()
    stopped_at = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    assert 1 <= stopped_at < 1000
    capsys.readouterr()
    assert main(arguments(stopped_at + 2)) == 0  # started again, here
    printed = capsys.readouterr().out
    assert f"step {stopped_at + 2}/{stopped_at + 2}" in printed
    assert f"step {stopped_at}/{stopped_at + 2} " not in printed  # it did not start again from step 0
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{stopped_at + 2}")


def test_checkpoint_dir_evaluates_another_runs_checkpoints(trained: dict[str, Path], capsys) -> None:
    """The OD API's --checkpoint_dir: evaluate the training run's latest checkpoint into another folder."""
    assert train(trained, 4) == 0  # no-op when already at step 4; keeps this test independent of order
    evaluation = trained["root"] / "evaluation"
    assert (
        main(
            train_arguments(
                evaluation,
                trained["data"],
                TINY,
                *("--checkpoint_dir", str(trained["model"]), "--eval_timeout", "5", "--num_train_steps", "4"),
            )
        )
        == 0
    )
    assert [row.split(",")[0] for row in (evaluation / "metrics.csv").read_text().splitlines()[1:]] == ["4"]
    assert not list(evaluation.glob("ckpt-*"))  # it evaluated; it did not train


def test_tensorboard_has_losses_metrics_and_validation_images(trained: dict[str, Path]) -> None:
    def tags(folder: Path) -> set[str]:
        return {
            value.tag
            for events in folder.glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(events))
            for value in event.summary.value
        }

    assert {"total_loss", "learning_rate"} <= tags(trained["model"] / "train")
    validation = tags(trained["model"] / "validation")
    validation_classes = json.loads((trained["data"] / "dataset_stats.json").read_text())["splits"]["val"][
        "classes"
    ]
    assert {"AP", "AP50"} | {f"Precision mAP ByCategory/{name}" for name in validation_classes} <= validation
    assert "validation images: true | predicted" in validation


@pytest.fixture(scope="module")
def exported(trained: dict[str, Path]) -> Path:
    """No config flags: the model is the one MODEL_DIR/params.yaml describes (TINY's 256 px input)."""
    command = ["export", "--trained_checkpoint_dir", str(trained["model"])]
    assert main([*command, "--output_directory", str(trained["export"])]) == 0
    assert "input_size: [256, 256, 3]" in (trained["export"] / "params.yaml").read_text()
    return trained["export"]


def test_export_writes_the_od_api_layout(exported: Path) -> None:
    assert {"saved_model", "checkpoint", "params.yaml", "label_map.pbtxt"} <= {
        path.name for path in exported.iterdir()
    }


def test_export_refuses_a_folder_that_is_not_an_earlier_export(trained: dict[str, Path], capsys) -> None:
    target = trained["root"] / "user_folder"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert (
        main(
            [
                "export",
                "--pipeline_config_path",
                str(CONFIG),
                "--trained_checkpoint_dir",
                str(trained["model"]),
                "--output_directory",
                str(target),
                "--params_override",
                TINY,
            ]
        )
        == 2
    )
    assert "is not an earlier export" in capsys.readouterr().err
    assert [path.name for path in target.iterdir()] == ["notes.txt"]
    assert not [path for path in target.parent.iterdir() if path.name.startswith(".user_folder")]


def test_export_loads_in_a_process_that_never_imported_the_project(exported: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, tensorflow as tf
        model = tf.saved_model.load({str(exported / "saved_model")!r})
        serve = model.signatures["serving_default"]
        specs = serve.structured_input_signature[1]
        inputs = {{k: [v.dtype.name, v.shape.as_list()] for k, v in specs.items()}}
        outputs = serve(input_tensor=tf.zeros([1, 300, 500, 3], tf.uint8))
        assert not any(name.startswith(("cervical_tf", "tfrecords_gen")) for name in sys.modules)
        print(json.dumps({{"inputs": inputs,
                          "outputs": {{k: [v.dtype.name, v.shape.as_list()] for k, v in outputs.items()}},
                          "box_range": [float(tf.reduce_min(outputs["detection_boxes"])),
                                        float(tf.reduce_max(outputs["detection_boxes"]))]}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True, timeout=300
    )
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["inputs"] == {"input_tensor": ["uint8", [1, None, None, 3]]}
    assert (
        facts["outputs"]["detection_boxes"][0] == "float32" and facts["outputs"]["detection_boxes"][1][2] == 4
    )
    assert {name: spec[0] for name, spec in facts["outputs"].items()} == {
        "detection_boxes": "float32",
        "detection_scores": "float32",
        "detection_classes": "float32",
        "num_detections": "float32",
    }
    assert 0.0 <= facts["box_range"][0] <= facts["box_range"][1] <= 1.0


def test_predict_and_evaluate_with_the_real_export(exported: Path, trained: dict[str, Path]) -> None:
    images = sorted((trained["sample"] / "im_Parabasal").glob("*.bmp"))[:2]
    results = trained["root"] / "results"
    assert (
        main(
            [
                "predict",
                "--model",
                str(exported),
                "--output",
                str(results),
                "--min-score",
                "0",
                *map(str, images),
            ]
        )
        == 0
    )
    assert {"detections.json", "detections.csv", "detections.geojson", "coco_results.json"} <= {
        path.name for path in results.iterdir()
    }
    assert len(list((results / "overlays").glob("*.png"))) == 2
    geojson = json.loads((results / "detections.geojson").read_text())
    assert geojson["type"] == "FeatureCollection"
    report_dir = trained["root"] / "report"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(exported),
                "--data",
                str(trained["data"] / "test-*.tfrecord"),
                "--output",
                str(report_dir),
            ]
        )
        == 0
    )
    report = json.loads((report_dir / "report.json").read_text())
    assert {"AP", "AP50", "AP75", "AR100", "per_class"} <= set(report)


def test_evaluate_agrees_with_training_time_validation(trained: dict[str, Path]) -> None:
    """One export, one TFRecord set, both evaluators: training's validation (`train --checkpoint_dir`
    on the export's checkpoint, official.vision's COCOEvaluator on val_coco.json) and `evaluate` of
    the SavedModel (with --no-agnostic-nms: training scores the model's own per-class NMS output).

    A 2-step model finds no cell: on the real boxes both would say 0 and prove nothing. So it is
    exported with a score threshold of 0 (every box kept), and the validation images are written
    again with, beside their cells, six of the export's own detections per image as ground truth
    (one of them a crowd region): AP becomes a number that the two definitions could disagree on.
    After 4 steps the tiny model sometimes returns only boxes under 2 px, which no record allows:
    then both sides score 0 and only their equality is checked here; tests/test_metric_agreement.py
    carries the non-trivial comparison with a stand-in model in every run.
    Tolerance 1e-3: metrics.csv keeps 5 decimals, and the two runs compute the same network in
    different graphs (validation input pipeline vs. the exported graph's own resizing), which moves
    boxes and scores by float rounding only.
    """
    import csv

    from PIL import Image

    from cervical_tf.evaluation.ground_truth import read_tfrecords
    from cervical_tf.inference.predictor import Predictor
    from tfrecords_gen import writer
    from tfrecords_gen.label_map import read_label_map
    from tfrecords_gen.records import Box, ImageRecord

    root = trained["root"] / "agreement"
    (root / "images").mkdir(parents=True)
    # Its own export, keeping every box whatever its score (post-processing may change at export):
    # a 2-step model can score every box under the default threshold, and then both sides say 0.
    exported = root / "export"
    export = [
        "export",
        "--trained_checkpoint_dir",
        str(trained["model"]),
        "--output_directory",
        str(exported),
    ]
    assert (
        main([*export, "--params_override", "task.model.detection_generator.pre_nms_score_threshold=0.0"])
        == 0
    )
    label_map = read_label_map(trained["data"] / "label_map.pbtxt")
    names = {class_id: name for name, class_id in label_map.items()}
    predictor = Predictor.load(exported)
    records, own_boxes = [], 0
    for index, (truth, pixels) in enumerate(read_tfrecords(sorted(trained["data"].glob("val-*.tfrecord")))):
        found = predictor.predict(pixels, truth.name, max_detections=1000, agnostic_nms=False)
        cells = [
            Box(names[int(class_id)], *map(float, box))
            for box, class_id in zip(truth.boxes_px, truth.class_ids, strict=True)
        ]
        # A barely trained model also returns boxes thinner than a pixel: take the ones a record allows.
        sizable = np.flatnonzero((found.boxes_px[:, 2:] - found.boxes_px[:, :2] >= 2).all(axis=1))
        chosen = [int(sizable[rank]) for rank in (0, 1, 3, 10, 30, 60) if rank < len(sizable)]
        own_boxes += len(chosen)
        own = [
            Box(names[int(found.class_ids[pick])], *map(float, found.boxes_px[pick]), is_crowd=order == 1)
            for order, pick in enumerate(chosen)
        ]
        path = root / "images" / f"val_{index}.png"
        Image.fromarray(pixels).save(path)
        records.append(ImageRecord(path, path.name, truth.width, truth.height, path.name, (*cells, *own)))
    records.append(ImageRecord(records[0].image_path, "train.png", records[0].width, records[0].height, "t"))
    assignment = {record.name: "val" for record in records} | {"train.png": "train"}
    writer.write_dataset(root / "data", records, assignment, label_map, seed=0, workers=1, progress=False)

    training = [
        "train",
        "--pipeline_config_path",
        str(exported / "params.yaml"),  # the export's own model config
        "--model_dir",
        str(root / "validation"),
        "--checkpoint_dir",
        str(exported / "checkpoint"),
        "--data",
        str(root / "data"),
        "--validation_images",
        "0",
        "--eval_timeout",
        "1",
        "--num_train_steps",
        "0",  # the export's checkpoint has no step counter: 0 says it is the last, evaluation then ends
    ]
    assert main(training) == 0
    with (root / "validation" / "metrics.csv").open(newline="") as stream:
        training_time = list(csv.DictReader(stream))[-1]
    evaluation = ["evaluate", "--model", str(exported), "--output", str(root / "report"), "--no-agnostic-nms"]
    assert main([*evaluation, "--data", str(root / "data" / "val-*.tfrecord")]) == 0
    report = json.loads((root / "report" / "report.json").read_text())

    if own_boxes:  # the comparison is about real numbers, not two zeros (the real cells keep AP low)
        assert float(training_time["AP50"]) > 0.0
    assert report["AP"] == pytest.approx(float(training_time["AP"]), abs=1e-3)
    assert report["AP50"] == pytest.approx(float(training_time["AP50"]), abs=1e-3)


def test_export_writes_the_model_card_of_what_training_saw(exported: Path, trained: dict[str, Path]) -> None:
    """The card's facts come from the data folder, the checkpoint and metrics.csv training wrote."""
    import csv
    import importlib.metadata

    from cervical_tf.export.model_card import SYNTHETIC_WARNING
    from tfrecords_gen.label_map import read_label_map

    card = json.loads((exported / "model_card.json").read_text())
    stats = json.loads((trained["data"] / "dataset_stats.json").read_text())
    data = card["training_data"]
    assert data["folder"] == str(trained["data"])
    assert data["splits"] == {
        split: {"images": numbers["images"], "boxes": numbers["boxes"], "classes": numbers["classes"]}
        for split, numbers in stats["splits"].items()
    }
    assert sum(split["images"] for split in data["splits"].values()) == 10  # the workspace's sample
    assert data["synthetic_sample"] == "all" and card["warning"] == SYNTHETIC_WARNING  # trained on the sample
    steps = int(tf.train.latest_checkpoint(str(trained["model"])).rsplit("-", 1)[1])
    assert card["training"]["steps"] == steps
    with (trained["model"] / "metrics.csv").open(newline="") as stream:
        evaluation = [row for row in csv.DictReader(stream) if int(row["step"]) <= steps][-1]
    assert card["validation"] == {
        "step": int(evaluation["step"]),
        "AP": float(evaluation["AP"]),
        "AP50": float(evaluation["AP50"]),
    }
    assert card["recipe"] == {
        "config": None,  # exported without --pipeline_config_path: params.yaml does not name its YAML
        "backbone": "efficientnet-lite0",
        "decoder": "fpn",
        "input_size": [256, 256, 3],
        "init_checkpoint": str(lite0_checkpoint()),  # the demo config's pretrained:efficientnet-lite0
        "batch_size": 1,
    }
    label_map = read_label_map(trained["data"] / "label_map.pbtxt")
    assert card["classes"] == sorted(label_map, key=label_map.__getitem__)
    assert card["pixel_size_um"] is None
    assert card["project_version"] == importlib.metadata.version("cervical-tf")


def test_predict_with_the_sample_trained_export_warns_on_every_output(
    exported: Path, trained: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    from cervical_tf.export.model_card import SYNTHETIC_WARNING

    image = sorted((trained["sample"] / "im_Koilocytotic").glob("*.bmp"))[0]
    results = trained["root"] / "warned"
    capsys.readouterr()
    assert main(["predict", "--model", str(exported), "--output", str(results), str(image)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"model: {SYNTHETIC_WARNING.upper()}. efficientnet-lite0 + fpn at 256x256")
    assert f"warning: the model was {SYNTHETIC_WARNING}" in printed.err
    assert json.loads((results / "detections.json").read_text())[0]["model_warning"] == SYNTHETIC_WARNING
    assert json.loads((results / "model_card.json").read_text())["warning"] == SYNTHETIC_WARNING


def test_num_train_steps_fits_the_learning_rate_schedule(trained: dict[str, Path]) -> None:
    """The demo config drops its learning rate at 400 of 500 steps, after a 20-step warm-up: trained
    for 4 steps, params.yaml says the drop came at step 3, after a 1-step warm-up (a tenth of 4)."""
    import yaml

    assert train(trained, 4) == 0  # no-op when already at step 4; keeps this test independent of order
    trainer = yaml.safe_load((trained["model"] / "params.yaml").read_text())["trainer"]
    assert trainer["train_steps"] == 4
    assert trainer["optimizer_config"]["learning_rate"]["stepwise"]["boundaries"] == [3]
    assert trainer["optimizer_config"]["warmup"]["linear"]["warmup_steps"] == 1


def test_minutes_trains_to_its_budget_and_saves_the_last_checkpoint(
    workspace: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """`--minutes 1` on the tiny model (one evaluation, at the end): it measures its speed, plans
    N steps, fits the schedule to N, stops by itself and checkpoints where it stopped. Run again,
    it keeps the plan instead of measuring anew. Bounds are generous: the machine is shared."""
    import yaml

    from cervical_tf.training.config import ConfigRequest, load_experiment
    from cervical_tf.training.schedule import fitted_to_steps

    override = json.loads(TINY)
    override["trainer"]["validation_interval"] = 100000  # evaluate once, at the end
    model_dir = workspace["root"] / "budget"
    command = train_arguments(model_dir, workspace["data"], json.dumps(override), "--minutes", "1")
    assert main(command) == 0
    printed = capsys.readouterr().out
    record = json.loads((model_dir / "budget.json").read_text())
    run = record["runs"][0]
    assert record["calibration_steps"] == 4  # two loops of steps_per_loop (2)
    assert record["steps"] >= 4 and 0 < run["to_step"] <= record["steps"]
    assert f"trained {run['to_step']} steps in " in printed
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{run['to_step']}")
    assert run["seconds"] < 60 + 240  # the budget, and then some for a loaded machine
    # params.yaml holds the schedule fitted to N, as --num_train_steps N would have it.
    trainer = yaml.safe_load((model_dir / "params.yaml").read_text())["trainer"]
    assert trainer["train_steps"] == record["steps"]
    demo = load_experiment(ConfigRequest(CONFIG, params_override=TINY))
    expected = fitted_to_steps(demo, record["steps"])["trainer"]["optimizer_config"]
    assert (
        trainer["optimizer_config"]["learning_rate"]["stepwise"]["boundaries"]
        == (expected["learning_rate"]["stepwise"]["boundaries"])
    )
    assert "evaluation at step" in printed and (model_dir / "metrics.csv").is_file()
    if run["to_step"] == record["steps"] > 5:  # it did not stop at the deadline: the decay completed
        rates = {
            event.step: float(tf.make_ndarray(value.tensor))
            for events in (model_dir / "train").glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(events))
            for value in event.summary.value
            if value.tag == "learning_rate"
        }
        dropped_to = demo.trainer.optimizer_config.learning_rate.stepwise.values[-1]
        assert rates[max(rates)] == pytest.approx(dropped_to)  # the demo schedule's last rate

    assert main(command) == 0  # resumed: the recorded plan, no new measurement
    assert "calibrated" not in capsys.readouterr().out
    assert json.loads((model_dir / "budget.json").read_text())["steps"] == record["steps"]
