"""Every refusal and failure answered as `{"error": message}`, and one log line per request.

A refusal (`RequestError`, FastAPI's own 404/405 and query validation) gets its 4xx status;
anything unexpected is a 500 logged with its traceback, and the server carries on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from cervical_tf.serve.limits import RequestError

logger = logging.getLogger("cervical_tf.serve")


def add_error_handling(app: FastAPI) -> None:
    """`{"error": message}` for every refusal and failure, and the one log line per request."""

    @app.exception_handler(RequestError)
    async def refused(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = f"{error.detail}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.middleware("http")
    async def log_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as error:  # the last resort: answer 500 and keep serving
            logger.exception("unexpected error on %s %s", request.method, request.url.path)
            response = JSONResponse(
                {"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500
            )
        logger.info(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response
