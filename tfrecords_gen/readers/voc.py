"""Pascal VOC XML as LabelImg writes it: one `<annotation>` file per image.

`--input` is one .xml file or a folder of them. The image is `--images/<filename>` when --images is
given, else `<xml folder>/<filename>`, else `<xml folder>/../images/<filename>` (the annotations/
beside images/ layout), else the `<path>` element if that file exists. `<size>` gives the declared
width and height (0, which some tools write when they do not know, counts as not declared).

Coordinates: VOC corners are 1-based and inclusive (pixel 1 is the first pixel, xmax is the last
pixel inside the box). Converted to pixel edges with the origin at the top-left corner of the
image: `x_min = xmin - 1`, `y_min = ymin - 1`, `x_max = xmax`, `y_max = ymax`.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

from lxml import etree

from tfrecords_gen.readers.common import (
    ItemError,
    input_files,
    parse_float,
    parse_int,
    resolve_image,
    sort_images,
    used_image_dirs,
)
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, Problem, ReaderInput, ReadResult

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read(source: ReaderInput) -> ReadResult:
    """One ParsedImage per XML file, boxes converted to pixel edges (see the module docstring)."""
    paths = input_files(source.input_path, [".xml"], "a Pascal VOC .xml file or a folder of them")
    images: list[ParsedImage] = []
    problems: list[Problem] = []
    for path in paths:
        image = _read_file(path, source.images_dir, problems)
        if image is not None:
            images.append(image)
    return ReadResult(sort_images(images), problems, used_image_dirs(source.images_dir, images))


def _read_file(path: Path, images_dir: Path | None, problems: list[Problem]) -> ParsedImage | None:
    """The image of one XML file, or None (with a problem) when the file is not a VOC annotation."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as error:
        problems.append(Problem(Origin(path), Kind.PARSE_ERROR, f"not valid XML: {error}"))
        return None
    if root.tag != "annotation":
        message = f"expected an <annotation> root element, got <{root.tag}>"
        problems.append(Problem(Origin(path, root.sourceline), Kind.PARSE_ERROR, message))
        return None
    image_path = _image_path(root, path, images_dir)
    if image_path is None:
        message = "expected a <filename> or <path> naming the image, got neither"
        problems.append(Problem(Origin(path, root.sourceline), Kind.PARSE_ERROR, message))
        return None

    width, height = _declared_size(root, path, problems)
    boxes = []
    for element in root.findall("object"):
        origin = Origin(path, element.sourceline)
        try:
            boxes.append(_parse_object(element, origin))
        except ItemError as error:
            problems.append(error.problem(origin))
    return ParsedImage(image_path, tuple(boxes), Origin(path), width=width, height=height)


def _image_path(root: etree._Element, path: Path, images_dir: Path | None) -> Path | None:
    filename = (root.findtext("filename") or "").strip()
    declared = (root.findtext("path") or "").strip()
    if not filename:
        if not declared:
            return None
        filename = PureWindowsPath(declared).name  # LabelImg on Windows writes C:\...\x.png
    if images_dir is not None:
        return images_dir / filename
    found = resolve_image(filename, [path.parent, path.parent.parent / "images"])
    if not found.is_file() and declared and Path(declared).is_file():
        return Path(declared)
    return found


def _declared_size(
    root: etree._Element, path: Path, problems: list[Problem]
) -> tuple[int | None, int | None]:
    """`<size>` width and height; an unreadable size is reported and left undeclared (not fatal)."""
    size = root.find("size")
    if size is None:
        return None, None
    try:
        width, height = (_optional_int(size.findtext(name), name) for name in ("width", "height"))
    except ItemError as error:
        message = f"{error}; declared size ignored"
        problems.append(Problem(Origin(path, size.sourceline), Kind.PARSE_ERROR, message, fatal=False))
        return None, None
    if not width or not height:
        return None, None
    return width, height


def _optional_int(text: str | None, name: str) -> int | None:
    return parse_int(text, name) if text is not None and text.strip() else None


def _parse_object(element: etree._Element, origin: Origin) -> ParsedBox:
    name = (element.findtext("name") or "").strip()
    if not name:
        raise ItemError("expected a class in <name>, got nothing")
    bndbox = element.find("bndbox")
    if bndbox is None:
        raise ItemError("expected a <bndbox>, got none")
    xmin, ymin, xmax, ymax = (parse_float(bndbox.findtext(corner), corner) for corner in CORNERS)
    return ParsedBox(
        label=name,
        x_min=xmin - 1,
        y_min=ymin - 1,
        x_max=xmax,
        y_max=ymax,
        origin=origin,
        difficult=_flag(element, "difficult"),
        truncated=_flag(element, "truncated"),
    )


def _flag(element: etree._Element, name: str) -> bool:
    """A 0/1 flag; absent means 0."""
    text = (element.findtext(name) or "").strip()
    if not text:
        return False
    if text not in ("0", "1"):
        raise ItemError(f'expected 0 or 1 for {name}, got "{text}"')
    return text == "1"
