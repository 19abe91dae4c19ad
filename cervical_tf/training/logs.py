"""Where official.vision's, Orbit's, pycocotools' and TensorFlow's own output goes while our verbs run.

Training keeps the terminal for what a user watches (the progress line and evaluation summaries)
and sends everything else (Orbit's per-loop dicts, absl INFO lines, pycocotools' prints, Python
warnings) to MODEL_DIR/train.log, and to the terminal as well with --alsologtostderr.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LOG_NAME = "train.log"
# official.vision and Orbit log through absl; TensorFlow through its own logger.
LIBRARY_LOGGERS = ("absl", "tensorflow")


def quiet_logs(verbose: bool) -> None:
    """For verbs other than train: official.vision logs through absl; only warnings unless verbose."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    if verbose:
        absl_logging.set_stderrthreshold(absl_logging.INFO)


@contextlib.contextmanager
def training_logs(model_dir: Path, also_to_terminal: bool) -> Iterator[TextIO]:
    """Inside: stdout, stderr and the absl and tensorflow loggers go to MODEL_DIR/train.log
    (appended, so a resumed run keeps its history), teed to the terminal's stderr when
    `also_to_terminal`. Yields the terminal's stdout, where the caller writes what users watch."""
    terminal = sys.stdout
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / LOG_NAME).open("a", encoding="utf-8", buffering=1) as log_file:
        stream: TextIO = _Tee(log_file, sys.stderr) if also_to_terminal else log_file
        with (
            _loggers_to(stream, LIBRARY_LOGGERS),
            contextlib.redirect_stdout(stream),
            contextlib.redirect_stderr(stream),
        ):
            yield terminal


@contextlib.contextmanager
def _loggers_to(stream: TextIO, names: tuple[str, ...]) -> Iterator[None]:
    """Python loggers `names` write INFO and above to `stream` only (their own handlers hold the
    stderr of import time, which redirect_stderr cannot reach); restored on exit."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # A library's logging.basicConfig() inside would bind the root logger to `stream`, closed
    # after training: the demo's export, in the same process, then hit "I/O operation on closed file".
    root = logging.getLogger()
    saved = [(root, root.handlers[:], root.propagate, root.level)]
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


class _Tee:
    """A text stream writing to several streams (the log file and the terminal)."""

    def __init__(self, *streams: TextIO) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()

    def isatty(self) -> bool:
        return False
