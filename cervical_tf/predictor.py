"""Run an exported SavedModel on images: the only code in the project that calls a SavedModel.

The export contract (written by `cervical-tf export`): `EXPORT_DIR/saved_model/` with the
signature `serving_default` taking `input_tensor` uint8 [1, H, W, 3] and returning
`detection_boxes` float32 [1, N, 4] normalized [ymin, xmin, ymax, xmax] of the input image,
`detection_scores` float32 [1, N] (high to low), `detection_classes` float32 [1, N] (label-map ids
from 1) and `num_detections` float32 [1]; and `EXPORT_DIR/label_map.pbtxt`.

Large fields can be cut into overlapping tiles (`predict(..., tile=T, overlap=O)`). Tiles are
T x T, stride T - O, the last one in each row and column flush with the border. Their detections
are merged in two steps, both class-aware:

1. A box that touches an inner tile edge (an edge that is not the image border, within
   `max(2, 1% of T)` px) may be an object cut in two. It is dropped when a box of the same class
   that touches no inner edge covers at least `CONTAINMENT_THRESHOLD` of its area: a
   neighbouring tile saw the object whole. Plain NMS cannot do this, as a cut half has an IoU
   of only about 0.5 or less with the whole box.
2. Non-maximum suppression per class at IoU `IOU_THRESHOLD` removes the duplicates that
   neighbouring tiles both saw whole.

Every object no larger than the overlap lies whole inside some tile, so choose the overlap at
least as large as the largest object. Larger objects that no tile sees whole stay as the pieces
the tiles saw (they are not glued together, which would also glue neighbouring cells).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from cervical_tf.detections import Detections, boxes_from_normalized
from cervical_tf.signature import INPUT_NAME, OUTPUT_NAMES, SIGNATURE
from tfrecords_gen.image_files import to_8_bit
from tfrecords_gen.label_map import read_label_map
from tfrecords_gen.records import DataError

IOU_THRESHOLD = 0.5
CONTAINMENT_THRESHOLD = 0.7


@dataclass(frozen=True)
class RawDetections:
    """Valid detections in image pixels before merging: boxes_px float32 [N, 4] xyxy, scores
    float32 [N], class_ids int32 [N], cut bool [N] (touches an inner tile edge)."""

    boxes_px: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    cut: np.ndarray


class Predictor:
    """A loaded export: `Predictor.load(export_dir).predict(image, name)`."""

    def __init__(self, model: object, labels: dict[int, str], source: Path):
        """`model`: what tf.saved_model.load returned (kept: its signature needs its variables)."""
        self._model = model
        self._serve = model.signatures[SIGNATURE]
        self._labels = dict(labels)
        self.source = source

    @classmethod
    def load(cls, export_dir: Path) -> Predictor:
        """Load EXPORT_DIR (saved_model/ and label_map.pbtxt); DataError saying what is missing."""
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
        try:
            loaded = tf.saved_model.load(str(saved_model))
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise DataError(f"{saved_model}: cannot load the SavedModel: {error}") from error
        _check_signature(loaded, saved_model)
        return cls(loaded, labels, export_dir)

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
    ) -> Detections:
        """Detect on `image` (uint8 [H, W, 3] RGB; [H, W] grey and [H, W, 4] RGBA are converted).

        Without tiling, the model's output is returned as it is (filtered and truncated). With
        `tile`, an image larger than `tile` on either side is run in overlapping tiles and merged
        (see the module docstring). Returns at most `max_detections` boxes scoring at least
        `min_score`, in pixels of `image`, sorted by score.
        """
        validate_options(tile, overlap, max_detections, min_score)
        rgb = to_rgb(image)
        height, width = rgb.shape[:2]
        if tile is None or (height <= tile and width <= tile):
            raw = self._run(rgb, 0, 0, width, height, min_score)
            keep = np.arange(len(raw.scores))  # the model's own NMS already ran; nothing to merge
        else:
            raw = _concatenate(
                [
                    self._run(rgb[y0 : y0 + tile, x0 : x0 + tile], x0, y0, width, height, min_score)
                    for y0 in tile_starts(height, tile, overlap)
                    for x0 in tile_starts(width, tile, overlap)
                ]
            )
            keep = merge_tiles(raw)
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
    ) -> RawDetections:
        """Run one image or tile (uint8 [h, w, 3]) whose top-left is (x0, y0) in a width x height image."""
        tile_height, tile_width = rgb.shape[:2]
        outputs = self._serve(**{INPUT_NAME: tf.constant(rgb[np.newaxis])})
        count = int(outputs["num_detections"].numpy().reshape(-1)[0])
        scores = outputs["detection_scores"].numpy().reshape(-1)[:count].astype(np.float32)
        class_ids = np.rint(outputs["detection_classes"].numpy().reshape(-1)[:count]).astype(np.int32)
        boxes_px = boxes_from_normalized(
            outputs["detection_boxes"].numpy()[0, :count], tile_width, tile_height
        )
        self._check_class_ids(class_ids)
        boxes_px += np.array([x0, y0, x0, y0], dtype=np.float32)
        boxes_px = np.clip(boxes_px, 0, np.array([width, height, width, height], dtype=np.float32))
        margin = max(2.0, 0.01 * max(tile_width, tile_height))
        inner_edges = np.array([x0 > 0, y0 > 0, x0 + tile_width < width, y0 + tile_height < height])
        edges = np.array([x0, y0, x0 + tile_width, y0 + tile_height], dtype=np.float32)
        cut = ((np.abs(boxes_px - edges) <= margin) & inner_edges).any(axis=1)
        keep = scores >= min_score
        return RawDetections(boxes_px[keep], scores[keep], class_ids[keep], cut[keep])

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


def load_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of `path` (PNG, JPEG, BMP, TIFF, WebP), EXIF orientation applied.

    Grey and RGBA images become RGB (alpha dropped), 16-bit grey is scaled to 8 bits.
    Raises DataError naming the file when it is missing, not an image, or truncated.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return to_rgb(np.asarray(to_8_bit(image)))
    except FileNotFoundError as error:
        raise DataError(f"{path}: image file not found") from error
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: pixel data cannot be decoded (truncated or corrupt?): {error}") from error


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from uint8 [H, W] grey, [H, W, 1], [H, W, 3] or [H, W, 4] RGBA (alpha dropped)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise DataError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise DataError(f"expected an image of shape [H, W], [H, W, 3] or [H, W, 4], got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


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


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along a side of `length` px: stride tile - overlap, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def merge_tiles(raw: RawDetections) -> np.ndarray:
    """Indices into `raw` to keep: cut boxes covered by a whole same-class box go, then class NMS."""
    whole = np.flatnonzero(~raw.cut)
    dropped = np.zeros(len(raw.scores), dtype=bool)
    for index in np.flatnonzero(raw.cut):
        same_class = whole[raw.class_ids[whole] == raw.class_ids[index]]
        covered = _intersection(raw.boxes_px[index], raw.boxes_px[same_class]) / max(
            _area(raw.boxes_px[index : index + 1])[0], 1e-6
        )
        dropped[index] = bool((covered >= CONTAINMENT_THRESHOLD).any())
    kept = np.flatnonzero(~dropped)
    return kept[class_aware_non_max_suppression(raw.boxes_px[kept], raw.scores[kept], raw.class_ids[kept])]


def class_aware_non_max_suppression(
    boxes_px: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """Indices (int64, by descending score) kept by greedy NMS run separately for each class.

    boxes_px: float [N, 4] xyxy pixels; scores: float [N]; class_ids: int [N]. A box is dropped
    when a higher-scoring box of the SAME class overlaps it with IoU > iou_threshold.
    In numpy rather than tf.image.non_max_suppression: the tiles' outputs are numpy already,
    the cut-box rule beside it is numpy too, and N (tiles x detections) is small.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept: list[int] = []
    for class_id in np.unique(class_ids):
        candidates = order[class_ids[order] == class_id]
        while len(candidates):
            best, candidates = candidates[0], candidates[1:]
            kept.append(int(best))
            candidates = candidates[_iou(boxes_px[best], boxes_px[candidates]) <= iou_threshold]
    kept_array = np.array(kept, dtype=np.int64)
    return kept_array[np.argsort(-np.asarray(scores)[kept_array], kind="stable")]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    intersection = _intersection(box, boxes)
    union = _area(box[np.newaxis]) + _area(boxes) - intersection
    return intersection / np.maximum(union, 1e-6)


def _intersection(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Areas [M] shared by one xyxy box [4] and boxes [M, 4]."""
    width = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    height = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _concatenate(parts: list[RawDetections]) -> RawDetections:
    fields = ("boxes_px", "scores", "class_ids", "cut")
    return RawDetections(*(np.concatenate([getattr(part, field) for part in parts]) for field in fields))


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
