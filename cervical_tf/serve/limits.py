"""What the server refuses before any work: body size, image checks, tile count.

Every check raises `RequestError`, which the app answers as `{"error": message}` with its status:
- 413 a body over its limit (`max_upload_bytes` for /v1/detect uploads, `max_predict_bytes` for
  :predict JSON; checked on Content-Length, then while reading: at most the limit is ever
  buffered), an image over `max_image_pixels` (read from the header, before any pixel is
  decoded: a few-KB PNG can declare 400 million pixels), or tiling that would make more than
  `max_tiles` model calls (computed from the header too);
- 415 content that is not PNG, JPEG, BMP, TIFF or WebP, whatever its name or Content-Type says;
- 422 an image whose pixel data cannot be decoded (truncated or corrupt);
- 499 (logged only: no one is listening) a client that disconnected while sending its body.
How long a request may take is `jobs.Job`'s business; how many run at once, `slots.WorkerSlots`'.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from cervical_tf.errors import DataError

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
UPLOAD_FIELD = "image"
MEGABYTE = 1024 * 1024
UPLOAD_FLAG = "--max-upload-mb"
PREDICT_FLAG = "--max-predict-mb"


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits; `__post_init__` names each one's CLI flag.

    request_timeout_s: all a request may take from its arrival: body, waits, parsing, model calls.
    max_concurrent: model calls running at once; the default 1 keeps a model, which already
    uses every core, from being run twice side by side on a small machine.
    max_tiles: model calls one /v1/detect request may ask for with `tile` and `overlap`; the
    default 256 covers a 4000 x 4000 field in 512 px tiles with 128 px overlap (121 tiles).
    max_predict_bytes and max_concurrent_parses: parsed JSON takes about 8 times its size in
    memory, and holds the interpreter lock while it is parsed, so one parse at a time is the default.
    """

    max_upload_bytes: int = 50 * MEGABYTE
    max_image_pixels: int = 100_000_000
    request_timeout_s: float = 60.0
    max_concurrent: int = 1
    max_tiles: int = 256
    max_predict_bytes: int = 50 * MEGABYTE
    max_concurrent_parses: int = 1

    def __post_init__(self) -> None:
        flags = {
            "max_upload_bytes": UPLOAD_FLAG,
            "max_image_pixels": "--max-image-pixels",
            "request_timeout_s": "--request-timeout",
            "max_concurrent": "--max-concurrent",
            "max_tiles": "--max-tiles",
            "max_predict_bytes": PREDICT_FLAG,
            "max_concurrent_parses": "--max-concurrent-parses",
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


async def read_body(request: Request, max_bytes: int, flag: str) -> bytes:
    """The request body, refused with 413 (naming `flag`) as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes, flag)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(size, max_bytes, flag, at_least=True)
            chunks.append(chunk)
    except ClientDisconnect as error:
        raise RequestError(499, f"the client disconnected after sending {size} bytes of its body") from error
    return b"".join(chunks)


async def read_upload(request: Request, max_bytes: int) -> tuple[str, bytes]:
    """(filename, bytes) of the multipart/form-data field `image`, the body read within the limit."""
    pending = [await read_body(request, max_bytes, UPLOAD_FLAG)]

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


def check_tiles(
    filename: str, width: int, height: int, tile: int | None, overlap: int, limits: ServeLimits
) -> int:
    """How many model calls /v1/detect makes on a width x height image; 413 over `max_tiles`.

    Counted as `tiling.tile_count` counts, but without listing the tile offsets: a side may be
    100 million pixels long.
    """
    if tile is None:
        return 1
    count = _tiles_along(width, tile, overlap) * _tiles_along(height, tile, overlap)
    if count > limits.max_tiles:
        raise RequestError(
            413,
            f"{filename}: tile={tile} and overlap={overlap} cut the {width} x {height} image into {count} "
            f"tiles, one model call each, over the limit of {limits.max_tiles} (--max-tiles); ask for a "
            "larger tile, a smaller overlap, or no tile",
        )
    return count


def _tiles_along(length: int, tile: int, overlap: int) -> int:
    """len(tiling.tile_starts(length, tile, overlap)): stride tile - overlap, the last start flush."""
    return 1 if length <= tile else -(-(length - tile) // (tile - overlap)) + 1


def _too_large(size: int, max_bytes: int, flag: str, at_least: bool = False) -> RequestError:
    amount = f"more than {max_bytes}" if at_least else str(size)
    return RequestError(
        413,
        f"the request body is {amount} bytes, over the limit of {max_bytes / MEGABYTE:g} MB "
        f"({max_bytes} bytes, {flag})",
    )
