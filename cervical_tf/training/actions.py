"""Orbit actions run after each training loop or evaluation: what users watch while a model trains."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

import numpy as np

from tfrecords_gen.atomic import atomic_path

# official.vision's COCO evaluator names per-class metrics "<metric>/<class name>".
PER_CLASS_AP = "Precision mAP ByCategory/"
PER_CLASS_AP50 = "Precision mAP ByCategory@50IoU/"
SUMMARY_METRICS = ("AP", "AP50", "AP75", "ARmax100")


class ProgressLine:
    """Prints `step N/M  loss L  S steps/s  ETA` after every training loop (steps_per_loop steps).

    `total_steps` is asked each time: a --minutes run knows M only once it has measured its speed
    (None until then: the line says so and has no ETA).
    """

    def __init__(
        self, total_steps: Callable[[], int | None], current_step: Callable[[], int], terminal: TextIO
    ) -> None:
        self._total_steps = total_steps
        self._current_step = current_step
        self._terminal = terminal
        self._last: tuple[float, int] | None = None

    def __call__(self, output: Mapping[str, object]) -> None:
        now, step, total = time.monotonic(), self._current_step(), self._total_steps()
        loss = float(np.asarray(output.get("total_loss", output.get("training_loss", np.nan))))
        line = f"step {step}/{total if total is not None else '?'}  loss {loss:.4f}"
        if self._last is not None and step > self._last[1]:
            steps_per_second = (step - self._last[1]) / (now - self._last[0])
            line += f"  {steps_per_second:.2f} steps/s"
            if total is not None:
                line += f"  ETA {_duration(max(0, total - step) / steps_per_second)}"
        if total is None:
            line += "  (measuring this machine's speed)"
        self._last = (now, step)
        print(line, file=self._terminal, flush=True)


class MetricsCsv:
    """Appends one row per evaluation to metrics.csv: step, AP, AP50, AP75, AR100, per-class AP and AP50."""

    def __init__(self, path: Path, current_step: Callable[[], int], terminal: TextIO) -> None:
        self._path = path
        self._current_step = current_step
        self._terminal = terminal

    def __call__(self, output: Mapping[str, object]) -> None:
        row = {"step": self._current_step()}
        row.update({name: _scalar(output[name]) for name in SUMMARY_METRICS if name in output})
        for key, value in sorted(output.items()):
            for prefix, suffix in ((PER_CLASS_AP, "AP"), (PER_CLASS_AP50, "AP50")):
                if key.startswith(prefix):
                    row[f"{key[len(prefix) :]} {suffix}"] = _scalar(value)
        rows = [*self._read(), row]
        columns = list(dict.fromkeys(column for existing in rows for column in existing))
        with atomic_path(self._path) as temporary, temporary.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        ap50 = row.get("AP50")
        print(
            f"evaluation at step {row['step']}: AP {row.get('AP', float('nan')):.3f}  "
            f"AP50 {ap50 if ap50 is not None else float('nan'):.3f}  (metrics.csv)",
            file=self._terminal,
            flush=True,
        )

    def _read(self) -> list[dict]:
        if not self._path.exists():
            return []
        with self._path.open(newline="") as stream:
            return list(csv.DictReader(stream))


class ValidationImages:
    """Writes a few validation images to TensorBoard: true boxes (left) and predictions (right)."""

    def __init__(
        self,
        task,
        model,
        params,
        model_dir: Path,
        count: int,
        current_step: Callable[[], int],
        names: dict[int, str],
    ) -> None:
        self._task, self._model, self._params, self._names = task, model, params, names
        self._writer_dir = str(model_dir / params.trainer.validation_summary_subdir)
        self._count = count
        self._current_step = current_step
        self._batch = None

    def __call__(self, output: Mapping[str, object]) -> None:
        import tensorflow as tf

        from cervical_tf.training.validation_images import side_by_side

        if self._batch is None:  # the same images every time, so they can be compared across steps
            dataset = self._task.build_inputs(self._params.task.validation_data)
            self._batch = next(iter(dataset.unbatch().batch(self._count)))
        images, labels = self._batch
        outputs = self._model(
            images,
            anchor_boxes=labels["anchor_boxes"],
            image_shape=labels["image_info"][:, 1, :],
            training=False,
        )
        outputs = {
            key: value.numpy() for key, value in outputs.items() if key.startswith(("detection", "num_"))
        }
        panels = side_by_side(images.numpy(), labels, outputs, self._names)
        with tf.summary.create_file_writer(self._writer_dir).as_default():
            tf.summary.image(
                "validation images: true | predicted",
                panels,
                step=self._current_step(),
                max_outputs=self._count,
            )


def _scalar(value: object) -> float:
    return round(float(np.asarray(value)), 5)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
