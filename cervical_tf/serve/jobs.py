"""One deadline and one stop flag per request, so the server bounds work, not only the wait for it.

A `Job` starts when a request arrives and gives it `--request-timeout` seconds in all: reading
its body, waiting for a slot, parsing, every model call. Worker threads ask `Job.should_stop()`
before each model call (each tile, each :predict instance); it turns True at the deadline, when
the client disconnects (`stop_on_disconnect`) or when the server shuts down (`Jobs.stop_all`).
The request is then answered at once (503 with Retry-After, 408 for a body that does not arrive
in time) while its worker stops at its next check.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from starlette.requests import Request

from cervical_tf.serve.limits import RequestError

DISCONNECTED = "the client disconnected"
SHUTTING_DOWN = "the server is shutting down"
CANCELLED = "the request was cancelled"
Result = TypeVar("Result")


class Job:
    """A request's budget: `timeout_s` from now, and the reason it was stopped early, if it was."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.stop_reason: str | None = None
        self._stopped = asyncio.Event()

    def stop(self, reason: str) -> None:
        """Ask the work to stop (event-loop side); the first reason is the one reported."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self._stopped.set()

    def should_stop(self) -> bool:
        """True once stopped or past the deadline; safe to ask from any thread."""
        return self.stop_reason is not None or time.monotonic() >= self.deadline

    def why_stopped(self) -> str:
        return self.stop_reason or f"past the request's deadline ({self.timeout_s:g} s, --request-timeout)"

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def until(self, future: asyncio.Future) -> bool:
        """Wait for `future`: True once it is done, False if the job stops or expires first."""
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait(
                {future, stopped}, timeout=self.remaining_s(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        return future in done

    def refusal(self, overdue_message: str) -> RequestError:
        """The answer to a request whose job stopped: 499 (no one is listening) or 503 with Retry-After.

        `overdue_message` explains a request that ran out of time, in the terms of where it was.
        """
        if self.stop_reason == DISCONNECTED:
            return RequestError(499, f"{DISCONNECTED}; its work was stopped")
        retry_after = {"Retry-After": str(max(1, math.ceil(self.timeout_s)))}
        if self.stop_reason is not None:
            return RequestError(503, f"{self.stop_reason}; retry later", retry_after)
        return RequestError(503, overdue_message, retry_after)


class Jobs:
    """The jobs of the requests in progress, so that shutdown stops them instead of waiting for them."""

    def __init__(self) -> None:
        self._running: set[Job] = set()
        self._closing = False

    @contextmanager
    def start(self, timeout_s: float) -> Iterator[Job]:
        """A job for one request, registered while the request is handled (stopped if shutting down)."""
        job = Job(timeout_s)
        if self._closing:
            job.stop(SHUTTING_DOWN)
        self._running.add(job)
        try:
            yield job
        finally:
            self._running.discard(job)

    def stop_all(self) -> None:
        """Stop every job, now and from now on: the server is shutting down."""
        self._closing = True
        for job in list(self._running):
            job.stop(SHUTTING_DOWN)


async def read_in_time(job: Job, reading: Awaitable[Result]) -> Result:
    """`await reading` (a request body) within the job's deadline; 408 when it does not arrive in time."""
    try:
        async with asyncio.timeout(job.remaining_s()):
            return await reading
    except TimeoutError as error:
        raise RequestError(
            408,
            f"the request body did not arrive within {job.timeout_s:g} s (--request-timeout); "
            "send it faster, or a smaller one",
        ) from error


@asynccontextmanager
async def stop_on_disconnect(request: Request, job: Job) -> AsyncIterator[None]:
    """Stop `job` if the client disconnects while the block runs; the body must be read already.

    Once the body is read, the next ASGI message a server sends is `http.disconnect`, so the
    watch costs one waiting task and no polling.
    """

    async def watch() -> None:
        if (await request.receive())["type"] == "http.disconnect":
            job.stop(DISCONNECTED)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
