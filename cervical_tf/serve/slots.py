"""Bounded worker threads: at most N functions at once (model calls, :predict JSON parsing).

The event loop never runs the work itself, so health checks and uploads stay responsive while it
runs. Waiting for a slot and the work both count against the request's `Job`: when the job
stops or expires the request is answered at once, and the slot stays taken until the worker has
really returned (at its next `should_stop` check), so N bounds the busy threads, not only the
requests in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from cervical_tf.serve.jobs import CANCELLED, Job

logger = logging.getLogger("cervical_tf.serve")
Result = TypeVar("Result")


class WorkerSlots:
    """`count` slots for `name` work (e.g. "model"), each run in a worker thread of its own pool.

    `count_flag` is the CLI flag setting `count`, named in the busy server's 503.
    """

    def __init__(self, count: int, name: str, count_flag: str):
        self._semaphore = asyncio.Semaphore(count)
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix=name.replace(" ", "-"))
        self._name = name
        self._count_flag = count_flag

    async def run(self, job: Job, function: Callable[[], Result]) -> Result:
        """`function()` in a worker thread once a slot is free, within `job`; else `job.refusal`.

        `function` should ask `job.should_stop()` between steps: the request is answered when the
        job stops, but the slot is freed only when `function` returns or raises.
        """
        await self._acquire(job)
        future = asyncio.get_running_loop().run_in_executor(self._executor, function)
        future.add_done_callback(functools.partial(self._finished, job))
        try:
            finished = await job.until(future)
        except BaseException:  # cancelled (e.g. uvicorn's shutdown timeout): let the worker stop too
            job.stop(CANCELLED)
            raise
        if finished and not (future.exception() is not None and job.should_stop()):
            return future.result()
        raise job.refusal(
            f"the request did not finish within {job.timeout_s:g} s (--request-timeout) and was stopped; "
            "retry later, or ask for less work (a larger tile, a smaller overlap, fewer instances)"
        )

    async def _acquire(self, job: Job) -> None:
        acquire = asyncio.ensure_future(self._semaphore.acquire())
        acquired = False
        try:
            acquired = await job.until(acquire)
        finally:
            if not acquired and not acquire.cancel():  # acquired after all, but too late: give it back
                self._semaphore.release()
        if not acquired:
            raise job.refusal(
                f"the server is busy: no {self._name} slot became free within {job.timeout_s:g} s "
                f"(--request-timeout, {self._count_flag}); retry later"
            )

    def _finished(self, job: Job, future: asyncio.Future) -> None:
        """The worker returned: free its slot; log work that stopped early (its request may be answered)."""
        self._semaphore.release()
        if future.cancelled():
            return
        error = future.exception()  # retrieved here, or asyncio would log it as never retrieved
        if error is not None and job.should_stop():
            logger.info("%s: %s", error, job.why_stopped())

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
