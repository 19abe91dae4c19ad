"""Run an exported SavedModel on images: the only code in the project that calls a SavedModel.

The export contract (written by `cervical-tf export`): `EXPORT_DIR/saved_model/` with the
signature `serving_default` taking `input_tensor` uint8 [1, H, W, 3] and returning
`detection_boxes` float32 [1, N, 4] normalized [ymin, xmin, ymax, xmax] of the input image,
`detection_scores` float32 [1, N] (high to low), `detection_classes` float32 [1, N] (label-map ids
from 1) and `num_detections` float32 [1]; and `EXPORT_DIR/label_map.pbtxt`. `EXPORT_DIR/model_card.json`
(what the model learned from) is read when present: `Predictor.model_card`.
Large fields run in overlapping tiles, merged by `tiling.merge_tiles`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from cervical_tf import boxes
from cervical_tf.boxes import norm_yxyx_to_px
from cervical_tf.errors import DataError
from cervical_tf.export.model_card import ModelCard
from cervical_tf.export.signature import INPUT_NAME, OUTPUT_NAMES, SIGNATURE
from cervical_tf.images import to_rgb
from cervical_tf.inference import tiling
from cervical_tf.inference.detections import Detections
from tfrecords_gen.label_map import read_label_map


class PredictionStopped(Exception):
    """`Predictor.predict` stopped early because its `should_stop` said so."""


class Predictor:
    """A loaded export: `Predictor.load(export_dir).predict(image, name)`."""

    def __init__(self, model: object, labels: dict[int, str], source: Path, model_card: ModelCard):
        """`model`: what tf.saved_model.load returned (kept: its signature needs its variables)."""
        self._model = model
        self._serve = model.signatures[SIGNATURE]
        self._labels = dict(labels)
        self.source = source
        self.model_card = model_card

    @classmethod
    def load(cls, export_dir: Path) -> Predictor:
        """Load EXPORT_DIR (saved_model/, label_map.pbtxt, model_card.json if any); DataError saying what
        is missing or broken."""
        export_dir = Path(export_dir)
        if not export_dir.is_dir():
            raise DataError(
                f"{export_dir}: model folder not found (expected a folder `cervical-tf export` wrote)"
            )
        saved_model = export_dir / "saved_model"
        if not (saved_model / "saved_model.pb").is_file():
            inside = (export_dir / "saved_model.pb").is_file()
            hint = " (this is the saved_model folder itself: pass its parent)" if inside else ""
            raise DataError(f"{export_dir}: no saved_model/saved_model.pb inside{hint}")
        label_map_path = export_dir / "label_map.pbtxt"
        if not label_map_path.is_file():
            raise DataError(f"{export_dir}: no label_map.pbtxt beside saved_model/")
        labels = {class_id: name for name, class_id in read_label_map(label_map_path).items()}
        model_card = ModelCard.load(export_dir)
        try:
            loaded = tf.saved_model.load(str(saved_model))
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise DataError(f"{saved_model}: cannot load the SavedModel: {error}") from error
        _check_signature(loaded, saved_model)
        return cls(loaded, labels, export_dir, model_card)

    @property
    def labels(self) -> dict[int, str]:
        """Label-map id -> class name."""
        return dict(self._labels)

    def predict(
        self,
        image: np.ndarray,
        name: str,
        tile: int | None = None,
        overlap: int = 128,
        max_detections: int = 100,
        min_score: float = 0.0,
        agnostic_nms: bool = boxes.AGNOSTIC_NMS,
        should_stop: Callable[[], bool] | None = None,
    ) -> Detections:
        """Detect on `image` (uint8 [H, W, 3] RGB; [H, W] grey and [H, W, 4] RGBA are converted).

        Without tiling, the model's output is kept as it is (its own NMS ran per class). With
        `tile`, an image larger than `tile` on either side is run in overlapping tiles and merged
        (see `tiling`). `agnostic_nms` then also suppresses boxes of other classes that overlap a
        higher-scoring box (IoU > 0.5): one cell, one label. Returns at most `max_detections`
        boxes scoring at least `min_score`, in pixels of `image`, sorted by score.
        `should_stop` is asked before each model call; when it answers True the work stops with
        `PredictionStopped` (the server's deadline and client disconnects).
        """
        validate_options(tile, overlap, max_detections, min_score)
        rgb = to_rgb(image)
        height, width = rgb.shape[:2]
        if tile is None or (height <= tile and width <= tile):
            windows = [(0, 0)]
            tile = max(height, width)
        else:
            windows = [
                (x0, y0)
                for y0 in tiling.tile_starts(height, tile, overlap)
                for x0 in tiling.tile_starts(width, tile, overlap)
            ]
        parts = []
        for x0, y0 in windows:
            if should_stop is not None and should_stop():
                raise PredictionStopped(f"{name}: stopped after {len(parts)} of {len(windows)} model calls")
            parts.append(self._run(rgb[y0 : y0 + tile, x0 : x0 + tile], x0, y0, width, height, min_score))
        raw = tiling.concatenate(parts)
        if len(windows) > 1:
            keep = tiling.merge_tiles(raw, agnostic=agnostic_nms)
        elif agnostic_nms:
            keep = boxes.non_max_suppression(raw.boxes_px, raw.scores, raw.class_ids, agnostic=True)
        else:
            keep = np.arange(len(raw.scores))  # the model's own per-class NMS already ran
        keep = keep[np.argsort(-raw.scores[keep], kind="stable")][:max_detections]
        class_ids = raw.class_ids[keep]
        return Detections(
            image=name,
            width=width,
            height=height,
            boxes_px=raw.boxes_px[keep],
            scores=raw.scores[keep],
            class_ids=class_ids,
            labels=tuple(self._labels[int(class_id)] for class_id in class_ids),
        )

    def _run(
        self, rgb: np.ndarray, x0: int, y0: int, width: int, height: int, min_score: float
    ) -> tiling.RawDetections:
        """Run one image or tile (uint8 [h, w, 3]) whose top-left is (x0, y0) in a width x height image."""
        tile_height, tile_width = rgb.shape[:2]
        outputs = self._serve(**{INPUT_NAME: tf.constant(rgb[np.newaxis])})
        count = int(outputs["num_detections"].numpy().reshape(-1)[0])
        scores = outputs["detection_scores"].numpy().reshape(-1)[:count].astype(np.float32)
        class_ids = np.rint(outputs["detection_classes"].numpy().reshape(-1)[:count]).astype(np.int32)
        boxes_px = norm_yxyx_to_px(outputs["detection_boxes"].numpy()[0, :count], tile_width, tile_height)
        self._check_class_ids(class_ids)
        boxes_px += np.array([x0, y0, x0, y0], dtype=np.float32)
        boxes_px = np.clip(boxes_px, 0, np.array([width, height, width, height], dtype=np.float32))
        cut = tiling.cut_at_inner_edges(boxes_px, x0, y0, tile_width, tile_height, width, height)
        keep = scores >= min_score
        return tiling.RawDetections(boxes_px[keep], scores[keep], class_ids[keep], cut[keep])

    def _check_class_ids(self, class_ids: np.ndarray) -> None:
        unknown = sorted(set(class_ids.tolist()) - set(self._labels))
        if unknown:
            raise DataError(
                f"{self.source}: the model returned class id(s) {unknown}, which label_map.pbtxt does not "
                f"define (it has ids {sorted(self._labels)}); export the model again with its label map"
            )

    def run_signature(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call `serving_default` as it is, for the server's TF Serving predict API.

        inputs: every input name of `signature_metadata()` -> an array of that dtype (strings:
        bytes in an object array) and a compatible shape, batch dimension included. Returns
        output name -> numpy array exactly as the SavedModel computed it (no conversion, no
        filtering). DataError when the names, dtypes or shapes do not fit the signature.
        """
        specs = self._serve.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise DataError(f"{self.source}: expected inputs {sorted(specs)}, got {sorted(inputs)}")
        tensors = {}
        for name, spec in specs.items():
            value = np.asarray(inputs[name])
            if spec.dtype == tf.string:
                fits = value.dtype.kind in "OSU"
            else:
                fits = value.dtype == spec.dtype.as_numpy_dtype
            if not fits or not spec.shape.is_compatible_with(value.shape):
                raise DataError(
                    f"{self.source}: input {name!r} must be {spec.dtype.name} {spec.shape}, "
                    f"got {value.dtype} {list(value.shape)}"
                )
            tensors[name] = tf.constant(value, dtype=spec.dtype)
        try:
            outputs = self._serve(**tensors)
        except (tf.errors.OpError, ValueError, TypeError) as error:
            raise DataError(f"{self.source}: the model refused the inputs: {error}") from error
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def signature_metadata(self) -> dict:
        """What `run_signature` takes and returns, for the server's TF Serving metadata API.

        {"inputs": {...}, "outputs": {...}}, each name -> {"dtype": TensorFlow dtype name
        ("uint8", "float32", "string"), "shape": [int or None (any size)], "name": tensor name}.
        """
        inputs = self._serve.structured_input_signature[1]
        return {
            "inputs": {name: _spec_metadata(name, spec) for name, spec in inputs.items()},
            "outputs": {
                name: _spec_metadata(name, spec) for name, spec in self._serve.structured_outputs.items()
            },
        }


def validate_options(tile: int | None, overlap: int, max_detections: int, min_score: float) -> None:
    """DataError for tiling and filtering options that cannot work."""
    if tile is not None and tile < 32:
        raise DataError(f"--tile must be at least 32 px, got {tile}")
    if tile is not None and not 0 <= overlap < tile:
        raise DataError(f"--overlap must be at least 0 and smaller than --tile ({tile}), got {overlap}")
    if max_detections < 1:
        raise DataError(f"--max-detections must be at least 1, got {max_detections}")
    if not 0.0 <= min_score <= 1.0:
        raise DataError(f"--min-score must be between 0 and 1, got {min_score}")


def _check_signature(loaded: object, saved_model: Path) -> None:
    """DataError unless `serving_default` takes and returns what the export contract says."""
    signatures = getattr(loaded, "signatures", {})
    if SIGNATURE not in signatures:
        raise DataError(f"{saved_model}: expected a {SIGNATURE!r} signature, found {sorted(signatures)}")
    serve = signatures[SIGNATURE]
    inputs = serve.structured_input_signature[1]
    spec = inputs.get(INPUT_NAME)
    if spec is None or spec.dtype != tf.uint8 or spec.shape.rank != 4 or spec.shape[-1] not in (3, None):
        raise DataError(
            f"{saved_model}: expected input {INPUT_NAME!r} uint8 [1, H, W, 3], got "
            + ", ".join(f"{key} {value.dtype.name} {value.shape}" for key, value in inputs.items())
        )
    missing = [name for name in OUTPUT_NAMES if name not in serve.structured_outputs]
    if missing:
        raise DataError(
            f"{saved_model}: signature {SIGNATURE!r} lacks output(s) {missing}; "
            f"it has {sorted(serve.structured_outputs)}"
        )


def _spec_metadata(name: str, spec: tf.TensorSpec) -> dict:
    """{"dtype", "shape", "name"} of one signature input or output (see `signature_metadata`)."""
    shape = None if spec.shape.rank is None else spec.shape.as_list()
    return {"dtype": spec.dtype.name, "shape": shape, "name": spec.name or name}
