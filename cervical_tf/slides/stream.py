"""Tiles read by one thread while the model runs on the caller's: a bounded queue between them.

At most `depth` tiles wait in the queue (plus one being read and one in the model), so memory
stays the same whatever the slide's size. A tile that cannot be read stops the stream: its
SlideError is raised in the caller when the tile's turn comes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")
QUEUE_DEPTH = 4
_DONE = object()


def stream_tiles(
    items: Iterable[Item], read: Callable[[Item], np.ndarray], depth: int = QUEUE_DEPTH
) -> Iterator[tuple[Item, np.ndarray]]:
    """(item, read(item)) for each item, in order, `read` running in a background thread.

    Leaving the loop early (an exception, a break) stops the reader thread before this returns."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                _put(waiting, (item, read(item)), stop)
        except Exception as error:  # handed to the consumer, raised there
            _put(waiting, error, stop)
            return
        _put(waiting, _DONE, stop)

    reader = threading.Thread(target=produce, name="slide-tile-reader", daemon=True)
    reader.start()
    try:
        while (entry := waiting.get()) is not _DONE:
            if isinstance(entry, Exception):
                raise entry
            yield entry
    finally:
        stop.set()
        reader.join()


def _put(waiting: queue.Queue, entry: object, stop: threading.Event) -> None:
    """Put `entry`, waiting for room, unless the consumer stopped."""
    while not stop.is_set():
        try:
            waiting.put(entry, timeout=0.1)
            return
        except queue.Full:
            continue
