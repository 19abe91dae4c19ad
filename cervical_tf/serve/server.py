"""Run the app under uvicorn so that shutting down never waits for long work.

On SIGTERM or Ctrl-C, uvicorn stops accepting connections and waits for the requests in
progress. Here every request's `Job` is stopped first: requests waiting for a slot and those
running answer 503 "the server is shutting down" at once, and their workers stop at their next
model call. Whatever still runs after SHUTDOWN_GRACE_S (e.g. an upload still arriving) is
cancelled by uvicorn.
"""

from __future__ import annotations

import contextlib
import socket

import uvicorn
from fastapi import FastAPI

from cervical_tf.serve.jobs import Jobs

SHUTDOWN_GRACE_S = 5.0


class _JobStoppingServer(uvicorn.Server):
    """A uvicorn server that stops the app's jobs before it waits for the requests to end."""

    def __init__(self, config: uvicorn.Config, jobs: Jobs):
        super().__init__(config)
        self._jobs = jobs

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._jobs.stop_all()
        await super().shutdown(sockets)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` (made by `create_app`, its jobs in `app.state.jobs`) until SIGTERM or Ctrl-C."""
    # access_log off: the app logs one line per request itself, with its latency.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    # uvicorn raises Ctrl-C again once it has shut down: that is the normal way out, not an error.
    with contextlib.suppress(KeyboardInterrupt):
        _JobStoppingServer(config, app.state.jobs).run()
