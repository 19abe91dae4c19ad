"""Run a per-image function over all cores with a progress bar.

Workers are started with `spawn`, so they never inherit TensorFlow's threads from the parent
(forking a process that has imported TensorFlow can deadlock) and import only what the
function's module needs (Pillow, not TensorFlow).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many items, starting worker processes costs more than it saves.
_MIN_ITEMS_FOR_WORKERS = 8


def default_workers() -> int:
    """The cores this process may use (respects CPU affinity, unlike os.cpu_count)."""
    return max(1, len(os.sched_getaffinity(0)))


def map_in_order(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    description: str,
    workers: int | None = None,
    progress: bool = True,
) -> Iterator[Result]:
    """Yield `function(item)` for every item, in input order, computed on `workers` processes."""
    workers = workers or default_workers()
    bar = tqdm(total=len(items), desc=description, unit="img", disable=not progress, leave=False)
    try:
        if workers == 1 or len(items) < _MIN_ITEMS_FOR_WORKERS:
            for item in items:
                yield function(item)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            chunksize = max(1, min(16, len(items) // (workers * 8)))
            for result in pool.map(function, items, chunksize=chunksize):
                yield result
                bar.update()
    finally:
        bar.close()
