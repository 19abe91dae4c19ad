"""A COCO ground truth's own image and category ids, for `predict --coco-gt`.

pycocotools scores results only against the ids of the ground truth it is given, and `convert`
numbers images by sorted name (`image/source_id`) and classes by its label map. So `predict`
looks each image up by its path against the ground truth's `file_name` (a path relative to the
converted data set's image folder, matched against the end of the image's path) and each class
by name, and writes those ids into coco_results.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from cervical_tf.errors import DataError


class CocoImage(NamedTuple):
    id: int
    width: int
    height: int


@dataclass(frozen=True)
class CocoIds:
    """Ids read from `source`: file_name -> its image, class name -> category id."""

    source: str
    images: dict[str, CocoImage]
    categories: dict[str, int]

    def match_images(self, paths: list[Path]) -> dict[str, str]:
        """str(path) -> the file_name it is; DataError for an image the ground truth does not list,
        and for two images that match the same entry. The longest file_name that ends the path
        wins ("slide1/a.png" over "a.png")."""
        by_base_name: dict[str, list[PurePosixPath]] = {}
        for file_name in self.images:
            by_base_name.setdefault(PurePosixPath(file_name).name, []).append(PurePosixPath(file_name))
        matched: dict[str, str] = {}
        taken: dict[str, Path] = {}
        for path in paths:
            parts = path.absolute().parts  # as given (symlinks kept): file_name is a path the user knows
            candidates = [
                str(name)
                for name in by_base_name.get(path.name, [])
                if parts[-len(name.parts) :] == name.parts
            ]
            if not candidates:
                raise DataError(
                    f"{path}: not in {self.source}: no file_name there is the end of this path; "
                    "predict only images of that conversion, or leave out --coco-gt"
                )
            file_name = max(candidates, key=len)
            if file_name in taken:
                raise DataError(
                    f"{taken[file_name]} and {path} both match file_name {file_name!r} of {self.source}"
                )
            taken[file_name] = path
            matched[str(path)] = file_name
        return matched

    def check_size(self, file_name: str, path: Path, width: int, height: int) -> None:
        """DataError when the image at `path` is not the size `file_name` has in the ground truth."""
        expected = self.images[file_name]
        if (width, height) != (expected.width, expected.height):
            raise DataError(
                f"{path}: {width}x{height} px, but {file_name!r} of {self.source} is "
                f"{expected.width}x{expected.height}: not the converted image"
            )

    def category_ids(self, labels: dict[int, str]) -> dict[int, int]:
        """The model's label-map id -> the ground truth's category id of the same class name."""
        unknown = sorted(name for name in labels.values() if name not in self.categories)
        if unknown:
            raise DataError(
                f"{self.source}: no categories named {unknown} (it has {sorted(self.categories)}); "
                "convert the data with the model's label map (convert --label-map)"
            )
        return {class_id: self.categories[name] for class_id, name in labels.items()}


def load_coco_ids(path: Path) -> CocoIds:
    """`path`: a COCO ground-truth JSON, or a folder written by `convert` (all its `*_coco.json`,
    whose ids `convert` keeps unique across splits)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*_coco.json"))
        if not files:
            raise DataError(
                f"--coco-gt {path}: no *_coco.json in this folder; pass a folder written by "
                "`cervical-tf convert` (with --folds: one of its fold-K folders) or a COCO JSON"
            )
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"--coco-gt {path}: no such file or folder")
    images: dict[str, CocoImage] = {}
    categories: dict[str, int] | None = None
    for file in files:
        file_images, file_categories = _read_ids(file)
        if categories is not None and file_categories != categories:
            raise DataError(f"--coco-gt {path}: {file.name} has other categories than {files[0].name}")
        categories = file_categories
        for file_name, entry in file_images.items():
            if images.setdefault(file_name, entry) != entry:
                raise DataError(f"--coco-gt {path}: {file_name!r} has different ids or sizes in {file.name}")
    description = str(path) if len(files) == 1 else f"{', '.join(file.name for file in files)} in {path}"
    return CocoIds(description, images, categories or {})


def _read_ids(path: Path) -> tuple[dict[str, CocoImage], dict[str, int]]:
    """file_name -> (id, width, height) and category name -> id of one COCO JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        images = {
            str(image["file_name"]): CocoImage(int(image["id"]), int(image["width"]), int(image["height"]))
            for image in document["images"]
        }
        categories = {str(category["name"]): int(category["id"]) for category in document["categories"]}
    except OSError as error:
        raise DataError(f"--coco-gt {path}: cannot read: {error}") from error
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"--coco-gt {path}: expected COCO ground truth with images (id, file_name, width, height) and "
            f"categories (id, name), as `cervical-tf convert` writes: {error!r}"
        ) from error
    if len(images) != len(document["images"]):
        raise DataError(f"--coco-gt {path}: a file_name is listed twice; image ids cannot be told apart")
    return images, categories
