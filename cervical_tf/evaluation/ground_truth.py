"""Ground truth for evaluation, read back from converted TFRecords or from a COCO JSON.

TFRecords store normalized `[0, 1]` box corners (the TF Object Detection API layout);
`boxes_px_from_normalized_corners` is where they become pixels again, the TFRecord boundary on
the way back. A COCO JSON stores pixel `[x, y, width, height]`. Either way every
`GroundTruthImage` holds pixel `[x_min, y_min, x_max, y_max]` boxes of the original image.
TensorFlow is imported only when TFRecords are read.
"""

from __future__ import annotations

import glob
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cervical_tf.boxes import xywh_to_xyxy
from cervical_tf.errors import DataError
from cervical_tf.images import load_image
from tfrecords_gen.label_map import read_label_map


@dataclass(frozen=True)
class GroundTruthImage:
    """One image's annotated boxes.

    image_id: the COCO image id (`image/source_id` of a converted TFRecord); boxes_px: float32
    [M, 4] pixel xyxy of the original image; class_ids: int32 [M] label-map ids (from 1);
    is_crowd: bool [M], True for a crowd region (COCO `iscrowd`, `image/object/is_crowd`): a
    region to ignore, not a cell to find. None means no crowd regions.
    """

    name: str
    image_id: int
    width: int
    height: int
    boxes_px: np.ndarray
    class_ids: np.ndarray
    is_crowd: np.ndarray | None = None

    def __post_init__(self) -> None:
        count = len(self.class_ids)
        if self.is_crowd is None:
            object.__setattr__(self, "is_crowd", np.zeros(count, dtype=bool))
        if (
            self.boxes_px.shape != (count, 4)
            or self.class_ids.shape != (count,)
            or self.is_crowd.shape != (count,)
        ):
            raise ValueError(
                f"{self.name}: boxes_px {self.boxes_px.shape}, class_ids {self.class_ids.shape} and "
                f"is_crowd {self.is_crowd.shape} do not describe the same {count} boxes"
            )

    def without_crowd(self) -> GroundTruthImage:
        """The boxes to find: this image without its crowd regions."""
        keep = ~self.is_crowd
        return replace(self, boxes_px=self.boxes_px[keep], class_ids=self.class_ids[keep], is_crowd=None)

    @property
    def crowd_boxes_px(self) -> np.ndarray:
        """float32 [C, 4] pixel xyxy of the crowd regions."""
        return self.boxes_px[self.is_crowd]


# An image's ground truth with its decoded pixels: uint8 [height, width, 3] RGB.
LoadedImage = tuple[GroundTruthImage, np.ndarray]


@dataclass(frozen=True)
class GroundTruthSource:
    """Ground truth found at `--data`: a description, the image count, the data's own label map
    (id -> name; None when the TFRecords have no label_map.pbtxt beside them) and `images()`,
    which reads the images one at a time as `(GroundTruthImage, uint8 [H, W, 3])`."""

    description: str
    image_count: int
    labels: dict[int, str] | None
    images: Callable[[], Iterator[LoadedImage]]


def open_ground_truth(data: Sequence[str], images_dir: Path | None = None) -> GroundTruthSource:
    """`data`: one COCO ground-truth JSON, or globs of TFRecord files; `images_dir` only for JSON."""
    if len(data) == 1 and data[0].lower().endswith(".json"):
        return _open_coco(Path(data[0]), images_dir)
    if any(pattern.lower().endswith(".json") for pattern in data):
        raise DataError(f"--data: expected one COCO JSON or TFRecord globs, got {' '.join(data)}")
    if images_dir is not None:
        raise DataError("--images applies to a COCO JSON --data only; TFRecords hold their images")
    paths = sorted({Path(path) for pattern in data for path in glob.glob(pattern)})
    if not paths:
        raise DataError(
            f"--data {' '.join(data)}: no TFRecord file matches (quote the glob: 'DIR/test-*.tfrecord')"
        )
    label_map_path = paths[0].parent / "label_map.pbtxt"
    labels = None
    if label_map_path.is_file():
        labels = {class_id: name for name, class_id in read_label_map(label_map_path).items()}
    description = f"{len(paths)} TFRecord file(s) in {paths[0].parent}"
    return GroundTruthSource(description, _count_records(paths), labels, lambda: read_tfrecords(paths))


def read_tfrecords(paths: Sequence[Path]) -> Iterator[LoadedImage]:
    """Parse OD API tf.Examples: pixels decoded to uint8 [H, W, 3], boxes back to pixel xyxy.

    image_id is `image/source_id` when it is a number, else the example's 1-based position.
    """
    import tensorflow as tf  # deferred: seconds to import, and only TFRecords need it

    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        **{
            f"image/object/bbox/{key}": tf.io.VarLenFeature(tf.float32)
            for key in ("xmin", "ymin", "xmax", "ymax")
        },
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    }
    position = 0
    for path in paths:
        try:
            for serialized in tf.data.TFRecordDataset(str(path)):
                position += 1
                example = tf.io.parse_single_example(serialized, features)
                yield _loaded_image(example, position, path)
        except tf.errors.OpError as error:
            raise DataError(
                f"{path}: record {position}: not a readable OD API tf.Example: {error.message}"
            ) from error


def boxes_px_from_normalized_corners(
    x_min: np.ndarray, y_min: np.ndarray, x_max: np.ndarray, y_max: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Normalized `[0, 1]` corner lists [M] (the tf.Example keys) -> float32 [M, 4] pixel xyxy."""
    return (
        np.stack([x_min, y_min, x_max, y_max], axis=1).reshape(-1, 4) * [width, height, width, height]
    ).astype(np.float32)


def class_id_map(
    data_labels: dict[int, str] | None, model_labels: dict[int, str], source: str
) -> dict[int, int]:
    """Ground-truth class id -> the model's id for the same class name (identity without data labels)."""
    if data_labels is None:
        return {class_id: class_id for class_id in model_labels}
    model_ids = {name: class_id for class_id, name in model_labels.items()}
    unknown = sorted(name for name in data_labels.values() if name not in model_ids)
    if unknown:
        raise DataError(
            f"{source}: classes {unknown} are not in the model's label map {sorted(model_ids)}; "
            "evaluate on data converted with the model's label map (convert --label-map)"
        )
    return {class_id: model_ids[name] for class_id, name in data_labels.items()}


def with_class_ids(image: GroundTruthImage, id_map: dict[int, int], source: str) -> GroundTruthImage:
    """`image` with its class ids translated through `id_map` (see `class_id_map`)."""
    unknown = sorted(set(image.class_ids.tolist()) - set(id_map))
    if unknown:
        raise DataError(
            f"{source}: {image.name}: class ids {unknown} are not in the label map ({sorted(id_map)})"
        )
    translated = np.array([id_map[class_id] for class_id in image.class_ids.tolist()], dtype=np.int32)
    return replace(image, class_ids=translated)


def _loaded_image(example: dict, position: int, path: Path) -> LoadedImage:
    """A parsed tf.Example (tensors keyed as in `read_tfrecords`) as ground truth and pixels."""
    import tensorflow as tf

    width, height = int(example["image/width"]), int(example["image/height"])
    name = example["image/filename"].numpy().decode() or f"{path.name}#{position}"
    source_id = example["image/source_id"].numpy().decode()
    corners = {
        key: tf.sparse.to_dense(example[f"image/object/bbox/{key}"]).numpy()
        for key in ("xmin", "ymin", "xmax", "ymax")
    }
    try:  # decoded as predict decodes files, so evaluate measures what predict would find
        pixels = load_image(io.BytesIO(example["image/encoded"].numpy()))
    except DataError as error:
        raise DataError(
            f"{path}: {name}: image/encoded cannot be decoded: {error.__cause__ or error}"
        ) from error
    if pixels.shape[:2] != (height, width):
        raise DataError(
            f"{path}: {name}: image/width x image/height say {width}x{height}, "
            f"the encoded image is {pixels.shape[1]}x{pixels.shape[0]}"
        )
    class_ids = tf.sparse.to_dense(example["image/object/class/label"]).numpy().astype(np.int32)
    truth = GroundTruthImage(
        name=name,
        image_id=int(source_id) if source_id.isdigit() else position,
        width=width,
        height=height,
        boxes_px=boxes_px_from_normalized_corners(
            corners["xmin"], corners["ymin"], corners["xmax"], corners["ymax"], width, height
        ),
        class_ids=class_ids,
        is_crowd=_crowd_flags(
            tf.sparse.to_dense(example["image/object/is_crowd"]).numpy(), len(class_ids), name
        ),
    )
    return truth, pixels


def _crowd_flags(flags: np.ndarray, count: int, name: str) -> np.ndarray:
    """image/object/is_crowd as bool [count]; absent (older or foreign TFRecords) means no crowd."""
    if not flags.size:
        return np.zeros(count, dtype=bool)
    if flags.size != count:
        raise DataError(f"{name}: {flags.size} image/object/is_crowd values for {count} boxes")
    return flags.astype(bool)


def _count_records(paths: Sequence[Path]) -> int:
    import tensorflow as tf

    try:
        return sum(1 for path in paths for _ in tf.data.TFRecordDataset(str(path)))
    except tf.errors.OpError as error:
        raise DataError(f"--data: a TFRecord file is unreadable: {error.message}") from error


def _open_coco(json_path: Path, images_dir: Path | None) -> GroundTruthSource:
    """A COCO detection JSON (bbox [x, y, width, height] pixels); images in `images_dir` or beside it."""
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
        labels = {int(category["id"]): str(category["name"]) for category in document["categories"]}
        entries = [
            (int(image["id"]), str(image["file_name"]), int(image["width"]), int(image["height"]))
            for image in document["images"]
        ]
        boxes: dict[int, list[tuple[list[float], int, bool]]] = {entry[0]: [] for entry in entries}
        for annotation in document["annotations"]:
            bbox = [float(value) for value in annotation["bbox"]]
            if len(bbox) != 4:
                raise ValueError(
                    f"annotation {annotation.get('id')}: bbox {bbox} is not [x, y, width, height]"
                )
            if annotation["image_id"] not in boxes:
                raise DataError(
                    f"{json_path}: annotation {annotation.get('id')} names image id "
                    f"{annotation['image_id']}, which is not in `images`"
                )
            boxes[annotation["image_id"]].append(
                (
                    xywh_to_xyxy(bbox)[0].tolist(),
                    int(annotation["category_id"]),
                    bool(annotation.get("iscrowd", 0)),
                )
            )
    except OSError as error:
        raise DataError(f"{json_path}: cannot read: {error}") from error
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{json_path}: expected COCO ground truth with images (id, file_name, width, height), "
            "annotations (image_id, category_id, bbox, optional iscrowd) and categories (id, name): "
            f"{error!r}"
        ) from error
    folder = images_dir if images_dir is not None else json_path.parent
    missing = [file_name for _, file_name, _, _ in entries if not (folder / file_name).is_file()]
    if missing:
        raise DataError(
            f"{json_path}: {len(missing)} of {len(entries)} images are not in {folder} "
            f"(first: {missing[0]}); point --images at the image folder"
        )

    def images() -> Iterator[LoadedImage]:
        for image_id, file_name, width, height in entries:
            image_boxes = boxes[image_id]
            truth = GroundTruthImage(
                name=file_name,
                image_id=image_id,
                width=width,
                height=height,
                boxes_px=np.array([box for box, _, _ in image_boxes], dtype=np.float32).reshape(-1, 4),
                class_ids=np.array([class_id for _, class_id, _ in image_boxes], dtype=np.int32),
                is_crowd=np.array([crowd for _, _, crowd in image_boxes], dtype=bool),
            )
            yield truth, _read_image(folder / file_name, width, height, json_path)

    return GroundTruthSource(f"{json_path} (images in {folder})", len(entries), labels, images)


def _read_image(path: Path, width: int, height: int, json_path: Path) -> np.ndarray:
    """An image file as the decoder gives it, checked against the size the JSON declares (the
    displayed size: EXIF orientation applied)."""
    try:
        pixels = load_image(path)
    except DataError as error:
        raise DataError(f"{json_path}: {error}; point --images at the image folder") from error
    if pixels.shape[:2] != (height, width):
        raise DataError(
            f"{json_path}: {path} is {pixels.shape[1]}x{pixels.shape[0]} as displayed, "
            f"the JSON says {width}x{height}"
        )
    return pixels
