"""What the server refuses and how long it waits: upload size, image checks, bounded model calls.

Every check raises `RequestError`, which the app answers as `{"error": message}` with its status:
- 413 an upload over `max_upload_bytes` (checked on Content-Length, then while reading: at most
  the limit is ever buffered), or an image over `max_image_pixels` (read from the header, before
  any pixel is decoded: a few-KB PNG can declare 400 million pixels);
- 415 content that is not PNG, JPEG, BMP, TIFF or WebP, whatever its name or Content-Type says;
- 422 an image whose pixel data cannot be decoded (truncated or corrupt);
- 503 with Retry-After when no model slot frees up within `request_timeout_s`.
"""

from __future__ import annotations

import asyncio
import io
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from cervical_tf.errors import DataError

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
UPLOAD_FIELD = "image"
MEGABYTE = 1024 * 1024
Result = TypeVar("Result")


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits (CLI: --max-upload-mb, --max-image-pixels, --request-timeout, --max-concurrent).

    max_concurrent: model calls running at once; the default 1 keeps a model, which already
    uses every core, from being run twice side by side on a small machine.
    """

    max_upload_bytes: int = 50 * MEGABYTE
    max_image_pixels: int = 100_000_000
    request_timeout_s: float = 60.0
    max_concurrent: int = 1

    def __post_init__(self) -> None:
        flags = {
            "max_upload_bytes": "--max-upload-mb",
            "max_image_pixels": "--max-image-pixels",
            "request_timeout_s": "--request-timeout",
            "max_concurrent": "--max-concurrent",
        }
        for name, flag in flags.items():
            if not getattr(self, name) > 0:
                raise DataError(f"{flag} must be greater than 0 ({name} = {getattr(self, name)})")


class RequestError(Exception):
    """A request the server refuses: HTTP `status`, a message saying why, optional response headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes, at_least=True)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: Request, max_bytes: int) -> tuple[str, bytes]:
    """(filename, bytes) of the multipart/form-data field `image`, the body read within the limit."""
    pending = [await read_body(request, max_bytes)]

    async def replay() -> dict:  # hands the body over once, so only the parsed copy stays in memory
        return {"type": "http.request", "body": pending.pop() if pending else b"", "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=20)
    try:
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            raise RequestError(
                400, f"expected a multipart/form-data upload with the image in a field named {UPLOAD_FIELD!r}"
            )
        return upload.filename or "upload", await upload.read()
    finally:
        await form.close()


def check_image(data: bytes, filename: str, limits: ServeLimits) -> tuple[str, int, int]:
    """(format, width, height) read from the image header only; 415 or 413 as the module says.

    The caller sets `PIL.Image.MAX_IMAGE_PIXELS` to the limit (see app.create_app), so Pillow's own
    bomb check agrees with this one; its warning between 1x and 2x the limit is ours to report.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as image:
                image_format, (width, height) = image.format or "?", image.size
    except Image.DecompressionBombError as error:  # Pillow's own check: over twice the limit
        raise RequestError(
            413,
            f"{filename}: more than twice the limit of {limits.max_image_pixels} pixels "
            "(--max-image-pixels); refused before decoding",
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise RequestError(
            415,
            f"{filename}: not an image this server reads (expected {', '.join(ACCEPTED_FORMATS)}; "
            "recognised by content, not by name)",
        ) from error
    if width * height > limits.max_image_pixels:
        raise RequestError(
            413,
            f"{filename}: {width} x {height} = {width * height} pixels, more than the limit of "
            f"{limits.max_image_pixels} (--max-image-pixels); refused before decoding",
        )
    return image_format, width, height


def decode_image(data: bytes, filename: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels, decoded as `cervical-tf predict` decodes files; 422 when corrupt."""
    # Imported here: the rest of this module (and tf_serving, which uses RequestError) then loads
    # without TensorFlow, so their unit tests start in milliseconds.
    from cervical_tf.images import load_image

    try:
        return load_image(io.BytesIO(data))  # Pillow opens a file object as it opens a path
    except DataError as error:
        reason = error.__cause__ or error
        raise RequestError(
            422, f"{filename}: the image data cannot be decoded (truncated or corrupt?): {reason}"
        ) from error


class ModelSlots:
    """At most `max_concurrent` model calls at once, each run in a worker thread.

    The event loop never runs a model itself, so health checks and uploads stay responsive while
    one runs. A request waits for a slot up to `timeout_s`, then gets 503 with Retry-After.
    """

    def __init__(self, max_concurrent: int, timeout_s: float):
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="model")
        self._timeout_s = timeout_s

    async def run(self, function: Callable[[], Result]) -> Result:
        """`function()` in a worker thread once a slot is free; RequestError 503 after the timeout."""
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self._timeout_s)
        except TimeoutError as error:
            raise RequestError(
                503,
                f"the server is busy: no model slot became free within {self._timeout_s:g} s "
                "(--request-timeout, --max-concurrent); retry later",
                {"Retry-After": str(max(1, math.ceil(self._timeout_s)))},
            ) from error
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        finally:
            self._semaphore.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _too_large(size: int, max_bytes: int, at_least: bool = False) -> RequestError:
    amount = f"more than {max_bytes}" if at_least else str(size)
    return RequestError(
        413,
        f"the upload is {amount} bytes, over the limit of {max_bytes / MEGABYTE:g} MB ({max_bytes} bytes, "
        "--max-upload-mb)",
    )
