"""The slide viewer's endpoints (`serve --slides DIR`): listing, Deep Zoom pyramid, results, the page.

    GET /v1/slides                                   the slides of DIR (by name), which results each
                                                     has, and its slide score from slide_report.json
    GET /v1/slides/{name}                            size, levels, pixel size, reader of one slide
    GET /v1/slides/{name}/image.dzi                  its Deep Zoom descriptor (XML, JPEG tiles)
    GET /v1/slides/{name}/image_files/{level}/{column}_{row}.{jpeg|png}
                                                     one tile, at most 256 x 256 px
    GET /v1/slides/{name}/{detections.geojson|gallery.json|gallery.png|slide_report.json}
                                                     RESULTS/<slide>/'s file, as predict wrote it
    GET /slides.html                                 the OpenSeadragon viewer (static/slides.html)

`name` is a file name of the listing (URL-encoded); anything else is a 404 (see `slide_folder`).
Every handler is a plain function, so FastAPI runs it in its thread pool: tile decoding never
blocks the event loop. Tiles are cheap (one read of at most 256 x 256 px from the nearest
level), so they are not counted against the model slots; the app's error answers and its log
line per request apply as everywhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import FileResponse

from cervical_tf.serve.limits import RequestError
from cervical_tf.serve.slide_folder import RESULT_FILES, ListedSlide, SlideFolder
from cervical_tf.slides.deepzoom import render_tile
from cervical_tf.slides.reader import SlideError, open_slide

TILE_CACHE = "private, max-age=3600"  # the page asks for ?v=<file version>, so a replaced slide reloads


def add_slide_routes(app: FastAPI, folder: SlideFolder, static_dir: Path) -> None:
    """Register the endpoints above on `app` for the slides of `folder`."""

    @app.get("/v1/slides")
    def list_slides() -> dict:
        slides = folder.slides()
        return {
            "results_folder": folder.results is not None,
            "slides": [
                {
                    "name": slide.name,
                    "results": slide.results_name,
                    "version": slide.version,
                    "files": [name for name in RESULT_FILES if folder.result_file(slide, name)],
                    "score": folder.score(slide),
                }
                for slide in slides
            ],
        }

    @app.get("/v1/slides/{name}")
    def slide_info(name: str) -> dict:
        slide = folder.find(name)
        try:
            with open_slide(slide.path) as reader:
                size = reader.pixel_size
                return {
                    "name": slide.name,
                    "width": reader.dimensions[0][0],
                    "height": reader.dimensions[0][1],
                    "levels": [list(dimensions) for dimensions in reader.dimensions],
                    "mpp": None if size is None else [size.x_um, size.y_um],
                    "format": reader.format,
                    "version": slide.version,
                }
        except SlideError as error:
            raise _unreadable(slide, error) from error

    @app.get("/v1/slides/{name}/image.dzi")
    def descriptor(name: str) -> Response:
        slide = folder.find(name)
        try:
            dzi = folder.pyramid(slide).get_dzi("jpeg")
        except SlideError as error:
            raise _unreadable(slide, error) from error
        return Response(dzi, media_type="application/xml")

    @app.get("/v1/slides/{name}/image_files/{level:int}/{column:int}_{row:int}.{tile_format}")
    def tile(name: str, level: int, column: int, row: int, tile_format: str) -> Response:
        slide = folder.find(name)
        try:
            data = render_tile(folder.pyramid(slide), level, column, row, tile_format)
        except ValueError as error:
            raise RequestError(404, f"{slide.name}: {error}") from error
        except SlideError as error:
            raise _unreadable(slide, error) from error
        media_type = f"image/{tile_format}"
        return Response(data, media_type=media_type, headers={"Cache-Control": TILE_CACHE})

    @app.get("/v1/slides/{name}/{file_name}")
    def result(name: str, file_name: str) -> FileResponse:
        slide = folder.find(name)
        path = folder.result_file(slide, file_name)
        if path is None:
            where = (
                "no --slide-results folder was given"
                if folder.results is None
                else (
                    f"the results folder has no {slide.results_name}/{file_name}; run `cervical-tf predict` "
                    "on the slide with --output RESULTS"
                )
            )
            raise RequestError(404, f"{slide.name}: no {file_name}: {where}")
        return FileResponse(path, media_type=RESULT_FILES[file_name], headers={"Cache-Control": "no-cache"})

    @app.get("/slides.html", include_in_schema=False)
    @app.get("/slides", include_in_schema=False)
    def viewer() -> FileResponse:
        page = static_dir / "slides.html"
        if not page.is_file():
            raise RequestError(
                404, f"the slide viewer is not installed ({page.name} is missing); the API works"
            )
        return FileResponse(page)


def _unreadable(slide: ListedSlide, error: SlideError) -> RequestError:
    """422 naming the slide by its listed name (the server's own paths stay out of the answer)."""
    message = str(error).replace(str(slide.path), slide.name)
    return RequestError(422, message if message.startswith(slide.name) else f"{slide.name}: {message}")
