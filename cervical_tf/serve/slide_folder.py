"""The allow-listed folder of `serve --slides DIR`: which slides it holds, their results, their pyramids.

Only the slides listed here are ever opened, looked up by file name in the listing: a name that
is not in it, whatever it spells (`..`, an absolute path, an encoded slash), is a 404. The listing
holds the slide files directly in DIR (not its subfolders, as `predict DIR` reads them) whose real
path, symlinks resolved, is inside DIR; it is read again when DIR's modification time changes.

Results come from RESULTS/<name>/, `name` as `predict` names a slide's folder (the file's stem;
the folder's name in front when two slides share a stem), and only the files in RESULT_FILES,
each refused when its real path leaves RESULTS.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.errors import DataError
from cervical_tf.inference.predict_images import slide_folder_names
from cervical_tf.serve.limits import RequestError
from cervical_tf.slides.gallery import GALLERY_JSON, GALLERY_PNG
from cervical_tf.slides.reader import is_slide
from cervical_tf.slides.report import REPORT_JSON

if TYPE_CHECKING:
    from openslide.deepzoom import DeepZoomGenerator

logger = logging.getLogger("cervical_tf.serve")
# What `predict` writes per slide (detections) and the gallery and report beside them.
RESULT_FILES = {
    "detections.geojson": "application/geo+json",
    GALLERY_JSON: "application/json",
    GALLERY_PNG: "image/png",
    REPORT_JSON: "application/json",
}
OPEN_PYRAMIDS = 8  # slides kept open for their tiles; the least recently used one is dropped


@dataclass(frozen=True)
class ListedSlide:
    """A slide of the folder: its file `name` in DIR, its real `path` (inside DIR), the name of its
    results folder, and `version`, its file's modification time in ns (changes when it is replaced)."""

    name: str
    path: Path
    results_name: str
    version: int


class SlideFolder:
    """DIR's slides and RESULTS' files for them; RESULTS may be None (slides without detections)."""

    def __init__(self, root: Path, results: Path | None = None) -> None:
        if not Path(root).is_dir():
            raise DataError(f"--slides {root}: not a folder; give the folder holding the slide files")
        if results is not None and not Path(results).is_dir():
            raise DataError(
                f"--slide-results {results}: not a folder; give the OUTPUT folder of "
                "`cervical-tf predict --model EXPORT --output OUTPUT DIR`"
            )
        self.root = Path(root).resolve()
        self.results = Path(results).resolve() if results is not None else None
        self._lock = threading.Lock()
        self._listing: dict[str, ListedSlide] = {}
        self._listed_version: int | None = None
        self._pyramids: OrderedDict[tuple[str, int], DeepZoomGenerator] = OrderedDict()

    def slides(self) -> list[ListedSlide]:
        """The slides in DIR, by file name; read again when DIR has changed since the last call."""
        version = self.root.stat().st_mtime_ns
        with self._lock:
            if version != self._listed_version:
                self._listing = {slide.name: slide for slide in self._scan()}
                self._listed_version = version
            return list(self._listing.values())

    def find(self, name: str) -> ListedSlide:
        """The listed slide called `name`; 404 for any other name."""
        for slide in self.slides():
            if slide.name == name:
                return slide
        raise RequestError(404, f"no slide named {name!r} in the slide folder (see /v1/slides)")

    def result_file(self, slide: ListedSlide, file_name: str) -> Path | None:
        """RESULTS/<slide's results name>/<file_name>, or None when there is no such file or its
        symlinks lead out of RESULTS (logged). 404 for a file name outside RESULT_FILES."""
        if file_name not in RESULT_FILES:
            raise RequestError(
                404, f"no {file_name!r} for a slide: its files are {', '.join(RESULT_FILES)} and image.dzi"
            )
        if self.results is None:
            return None
        path = (self.results / slide.results_name / file_name).resolve()
        if not path.is_relative_to(self.results):
            logger.warning("refused %s: its real path %s is outside --slide-results", file_name, path)
            return None
        return path if path.is_file() else None

    def score(self, slide: ListedSlide) -> float | None:
        """The slide score of RESULTS/<slide>/slide_report.json, or None without a readable one."""
        path = self.result_file(slide, "slide_report.json")
        if path is None:
            return None
        try:
            score = json.loads(path.read_text(encoding="utf-8")).get("score")
        except (OSError, ValueError, AttributeError) as error:
            logger.warning("%s: no slide score read from its slide_report.json: %s", slide.name, error)
            return None
        return float(score) if isinstance(score, int | float) else None

    def pyramid(self, slide: ListedSlide) -> DeepZoomGenerator:
        """The slide's Deep Zoom pyramid, kept open for the next tiles (SlideError when unreadable)."""
        from cervical_tf.slides.deepzoom import deep_zoom

        key = (slide.name, slide.version)
        with self._lock:
            if key in self._pyramids:
                self._pyramids.move_to_end(key)
                return self._pyramids[key]
        generator = deep_zoom(slide.path)  # outside the lock: other slides' tiles go on meanwhile
        with self._lock:
            self._pyramids[key] = generator
            while len(self._pyramids) > OPEN_PYRAMIDS:
                # Dropped, not closed: a tile may still be read from it; the slide closes when collected.
                self._pyramids.popitem(last=False)
        return generator

    def _scan(self) -> list[ListedSlide]:
        found = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            real = entry.resolve()
            if not real.is_relative_to(self.root):
                logger.warning("not listed: %s leads outside the slide folder (to %s)", entry.name, real)
                continue
            if is_slide(entry):
                found.append((entry, real))
        names = slide_folder_names([entry for entry, _ in found])  # predict's folders for the same slides
        return [
            ListedSlide(entry.name, real, name, real.stat().st_mtime_ns)
            for (entry, real), name in zip(found, names, strict=True)
        ]
