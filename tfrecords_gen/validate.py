"""Check parsed annotations against the image files; nothing bad passes silently.

Every problem names its file (and line) and kind; see `records.Kind`. Annotations are taken to be
in the frame the image is displayed in (EXIF orientation applied, as by every step that reads
pixels): sizes, clipping and "outside the image" use the displayed size. A 90-degree orientation
whose stored size is the declared one is named in the size_mismatch message; a mirrored or
upside-down one (EXIF 2-4) keeps the size, so boxes drawn on the stored pixels cannot be told from
correct ones. Fatal problems make
`cervical-tf convert --on-error fail` exit non-zero; under `--on-error skip` the item they
concern (a box, or a whole image) is left out and listed in rejected.csv. Nothing else is left out.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from cervical_tf.errors import DataError
from tfrecords_gen.image_files import find_images
from tfrecords_gen.inspect_images import ImageFacts, ImageProblem, inspect_image
from tfrecords_gen.parallel import map_in_order
from tfrecords_gen.records import (
    Box,
    ImageRecord,
    Kind,
    Origin,
    ParsedBox,
    ParsedImage,
    Problem,
    ReadResult,
)

# A box may stick out of its image by this fraction of the image side and still be clipped.
CLIP_TOLERANCE = 0.01
# Boxes narrower or lower than this many pixels cannot be a cell or a nucleus.
MIN_BOX_SIDE_PX = 1.0


@dataclass(frozen=True)
class ValidationOptions:
    """The choices `convert` exposes: negatives, a fixed class list, and how to group images."""

    keep_negatives: bool = False
    known_labels: frozenset[str] | None = None
    group_pattern: re.Pattern[str] | None = None


@dataclass
class Validated:
    records: list[ImageRecord]
    problems: list[Problem] = field(default_factory=list)

    @property
    def fatal(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.fatal]


def validate(
    result: ReadResult,
    options: ValidationOptions = ValidationOptions(),
    workers: int | None = None,
    progress: bool = True,
) -> Validated:
    """Turn a reader's output into checked `ImageRecord`s plus every problem found (reader's included)."""
    problems = list(result.problems)
    parsed = _add_unannotated_images(result, problems)
    parsed = _drop_duplicate_paths(parsed, problems)
    facts = dict(
        zip(
            [image.image_path for image in parsed],
            map_in_order(
                inspect_image, [image.image_path for image in parsed], "checking images", workers, progress
            ),
            strict=True,
        )
    )
    names = _image_names([image.image_path for image in parsed])
    first_path_by_digest: dict[str, Path] = {}
    records = []
    for image in parsed:
        image_facts = _usable_facts(image, facts[image.image_path], first_path_by_digest, problems)
        if image_facts is None:
            continue
        boxes = [
            box
            for parsed_box in image.boxes
            if (box := _check_box(parsed_box, image, image_facts, options, problems)) is not None
        ]
        if not image.boxes:
            problems.append(
                Problem(
                    image.origin,
                    Kind.UNANNOTATED_IMAGE,
                    "no annotation mentions this image"
                    + (
                        "; kept as a negative image"
                        if options.keep_negatives
                        else "; pass --keep-negatives to keep it as a negative image"
                    ),
                    fatal=not options.keep_negatives,
                )
            )
            if not options.keep_negatives:
                continue
        name = names[image.image_path]
        records.append(
            ImageRecord(
                image.image_path,
                name,
                image_facts.width,
                image_facts.height,
                _group_of(image, name, options),
                tuple(boxes),
            )
        )
    return Validated(records, problems)


def _add_unannotated_images(result: ReadResult, problems: list[Problem]) -> list[ParsedImage]:
    """Images in the reader's folders that no annotation mentions become images without boxes."""
    mentioned = {image.image_path.resolve() for image in result.images}
    extra = [
        ParsedImage(path, (), Origin(path))
        for folder in result.image_dirs
        for path in find_images(folder)
        if path.resolve() not in mentioned
    ]
    return sorted([*result.images, *extra], key=lambda image: str(image.image_path))


def _drop_duplicate_paths(parsed: list[ParsedImage], problems: list[Problem]) -> list[ParsedImage]:
    seen: dict[Path, ParsedImage] = {}
    unique = []
    for image in parsed:
        key = image.image_path.resolve()
        if key in seen:
            problems.append(
                Problem(
                    image.origin,
                    Kind.DUPLICATE_IMAGE,
                    f"{image.image_path} is already annotated in {seen[key].origin}",
                )
            )
            continue
        seen[key] = image
        unique.append(image)
    return unique


def _usable_facts(
    image: ParsedImage,
    facts: ImageFacts | ImageProblem,
    first_path_by_digest: dict[str, Path],
    problems: list[Problem],
) -> ImageFacts | None:
    """The image's facts, or None after recording why it cannot be used (unreadable, wrong size,
    a duplicate)."""
    where = image.origin
    if isinstance(facts, ImageProblem):
        problems.append(Problem(where, facts.kind, f"{image.image_path}: {facts.message}"))
        return None
    declared = (image.width, image.height)
    if image.width is not None and image.height is not None and declared != (facts.width, facts.height):
        problems.append(Problem(where, Kind.SIZE_MISMATCH, _size_mismatch(image, facts)))
        return None
    if facts.sha1 in first_path_by_digest:
        problems.append(
            Problem(
                where,
                Kind.DUPLICATE_IMAGE,
                f"{image.image_path} has the same content as {first_path_by_digest[facts.sha1]}",
            )
        )
        return None
    first_path_by_digest[facts.sha1] = image.image_path
    return facts


def _size_mismatch(image: ParsedImage, facts: ImageFacts) -> str:
    """The message; it names the EXIF orientation when the declared size is the stored, unturned one."""
    displayed = f"{facts.width}x{facts.height}" + (" as displayed" if facts.orientation != 1 else "")
    message = f"annotation says {image.width}x{image.height}, {image.image_path} is {displayed}"
    if (image.width, image.height) != facts.stored_size:
        return message
    stored_width, stored_height = facts.stored_size
    return (
        f"{message}: EXIF orientation {facts.orientation} turns its stored {stored_width}x{stored_height} "
        "pixels on display; annotations must be in the displayed frame (as a viewer shows the image)"
    )


def _check_box(
    parsed: ParsedBox,
    image: ParsedImage,
    facts: ImageFacts,
    options: ValidationOptions,
    problems: list[Problem],
) -> Box | None:
    """The box clipped to the image, or None after recording why it cannot be used."""
    width, height = facts.width, facts.height
    corners = (parsed.x_min, parsed.y_min, parsed.x_max, parsed.y_max)
    shown = f"{parsed.label} box {_format_box(corners)}"
    if options.known_labels is not None and parsed.label not in options.known_labels:
        problems.append(
            Problem(
                parsed.origin,
                Kind.UNKNOWN_CLASS,
                f"class {parsed.label!r} is not in the label map ({', '.join(sorted(options.known_labels))})",
            )
        )
        return None
    if not all(math.isfinite(value) for value in corners):
        problems.append(Problem(parsed.origin, Kind.NAN, f"{shown} has a non-finite coordinate"))
        return None
    if parsed.x_max - parsed.x_min < MIN_BOX_SIDE_PX or parsed.y_max - parsed.y_min < MIN_BOX_SIDE_PX:
        problems.append(
            Problem(
                parsed.origin,
                Kind.DEGENERATE_BOX,
                f"{shown}: expected x_min < x_max and y_min < y_max, at least {MIN_BOX_SIDE_PX:g} px apart",
            )
        )
        return None
    clipped = (
        max(0.0, parsed.x_min),
        max(0.0, parsed.y_min),
        min(float(width), parsed.x_max),
        min(float(height), parsed.y_max),
    )
    if clipped != corners:
        if not image.clip_to_image:
            overshoot_x = max(-parsed.x_min, parsed.x_max - width, 0.0) / width
            overshoot_y = max(-parsed.y_min, parsed.y_max - height, 0.0) / height
            if max(overshoot_x, overshoot_y) > CLIP_TOLERANCE:
                problems.append(
                    Problem(
                        parsed.origin,
                        Kind.BOX_OUTSIDE,
                        f"{shown} lies outside the {width}x{height} image by more than {CLIP_TOLERANCE:.0%}",
                    )
                )
                return None
            problems.append(
                Problem(
                    parsed.origin,
                    Kind.BOX_CLIPPED,
                    f"{shown} clipped to the {width}x{height} image as {_format_box(clipped)}",
                    fatal=False,
                )
            )
        if clipped[2] - clipped[0] < MIN_BOX_SIDE_PX or clipped[3] - clipped[1] < MIN_BOX_SIDE_PX:
            problems.append(
                Problem(parsed.origin, Kind.BOX_OUTSIDE, f"{shown} lies outside the {width}x{height} image")
            )
            return None
    return Box(
        parsed.label,
        *clipped,
        difficult=parsed.difficult,
        truncated=parsed.truncated,
        is_crowd=parsed.is_crowd,
    )


def _format_box(corners: Iterable[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in corners) + "]"


def _image_names(paths: list[Path]) -> dict[Path, str]:
    """Each image's path relative to the common folder of all images, with forward slashes."""
    if not paths:
        return {}
    folders = [str(path.resolve().parent) for path in paths]
    root = Path(os.path.commonpath(folders))
    return {path: PurePath(path.resolve().relative_to(root)).as_posix() for path in paths}


def _group_of(image: ParsedImage, name: str, options: ValidationOptions) -> str:
    """The leakage key: --group-pattern on the name, else the format's group, else the image itself."""
    if options.group_pattern is not None:
        match = options.group_pattern.search(name)
        if match is None:
            raise DataError(
                f"--group-pattern {options.group_pattern.pattern!r} does not match image {name!r}; "
                "every image needs a group, or images of one slide could land in two splits"
            )
        return match.group(1) if match.groups() else match.group(0)
    return image.group if image.group is not None else name
