"""`maskopt serve`: a local page that removes an object with a click (FastAPI + uvicorn).

The networks are loaded once. A photo is uploaded once and kept in memory (the last
``KEPT_PHOTOS`` uploads, nothing is written to disk but a temporary file while it is
decoded); each click or box runs the segmenters and the inpainters on it, one request
at a time (the networks use every core). Every failure is a JSON ``{"error": ...}``
that the page shows, and the server keeps serving.
"""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from importlib.resources import files
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel

from maskopt.errors import MaskoptError
from maskopt.io import read_rgb
from maskopt.removal import Remover

PAGE = files("maskopt") / "page"
KEPT_PHOTOS = 8
SEGMENT_COLOUR = np.array([0, 110, 255])  # the pretrained segmenter's segment: blue
LEARNED_COLOUR = np.array([255, 140, 0])  # what the learned mask adds: orange


class PickRequest(BaseModel):
    photo: str
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    grow: int = 0


class UserError(Exception):
    """A request the page can say something about (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def png_data_url(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay(rgb: np.ndarray, learned: np.ndarray, segment: np.ndarray | None) -> np.ndarray:
    """The photo with the pretrained segment tinted blue and the rest of the learned
    mask (its margin) orange."""
    out = rgb.astype(np.float32)
    if segment is not None:
        out[segment] = 0.45 * out[segment] + 0.55 * SEGMENT_COLOUR
    margin = learned & ~segment if segment is not None else learned
    out[margin] = 0.35 * out[margin] + 0.65 * LEARNED_COLOUR
    return out.round().astype(np.uint8)


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """An uploaded image as H×W×3 uint8, or a UserError saying why not."""
    if not data:
        raise UserError("the upload is empty", 400)
    with tempfile.NamedTemporaryFile(prefix="maskopt-upload-", suffix=Path(name).suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            rgb, _ = read_rgb(tmp.name, max_pixels=max_pixels)
        except MaskoptError as exc:  # the message names the upload, not the temporary file
            raise UserError(str(exc).replace(tmp.name, name or "the upload"), 400) from None
    return rgb


def create_app(remover: Remover, demo_warning: str | None, max_upload_bytes: int,
               max_pixels: int) -> FastAPI:
    app = FastAPI(title="maskopt", docs_url=None, redoc_url=None, openapi_url=None)
    photos: OrderedDict[str, np.ndarray] = OrderedDict()
    busy = threading.Lock()  # one photo at a time: the networks already use every core

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (PAGE / "index.html").read_text(encoding="utf-8")

    @app.get("/page.js")
    def script() -> Response:
        return Response((PAGE / "page.js").read_text(encoding="utf-8"),
                        media_type="text/javascript")

    @app.get("/api/info")
    def info() -> dict:
        return {"demo_warning": demo_warning, "image_size": remover.nets.image_size,
                "pretrained_segmenter": remover.pretrained is not None,
                "max_upload_bytes": max_upload_bytes}

    @app.post("/api/photo")
    async def upload(request: Request) -> dict:
        data = bytearray()
        async for chunk in request.stream():  # stop reading at the limit
            data += chunk
            if len(data) > max_upload_bytes:
                raise UserError(f"the upload is larger than {max_upload_bytes / 1e6:.0f} MB "
                                "(maskopt serve --max-upload-mb)", 413)
        rgb = decode_upload(bytes(data), request.headers.get("x-filename", ""), max_pixels)
        key = uuid.uuid4().hex
        photos[key] = rgb
        while len(photos) > KEPT_PHOTOS:
            photos.popitem(last=False)
        return {"photo": key, "width": rgb.shape[1], "height": rgb.shape[0]}

    @app.post("/api/remove")
    def remove(pick: PickRequest) -> dict:
        rgb = photos.get(pick.photo)
        if rgb is None:
            raise UserError("this photo is no longer on the server: open it again", 404)
        if (pick.point is None) == (pick.box is None):
            raise UserError("click the object, or drag a box around it")
        started = time.perf_counter()
        with busy:
            try:
                selection = remover.select(rgb, point=pick.point, box=pick.box)
                mask = selection.mask(pick.grow)
                result = remover.fill(rgb, mask, selection)
            except MaskoptError as exc:
                raise UserError(str(exc)) from None
        seconds = time.perf_counter() - started
        return {"overlay": png_data_url(overlay(rgb, mask, selection.pretrained)),
                "mask": png_data_url(mask.astype(np.uint8) * 255),
                "result": png_data_url(result),
                "removed": ", ".join(f"{name} (score {score:.2f})"
                                     for name, score in selection.removed),
                "mask_share": float(mask.mean()), "seconds": round(seconds, 3)}

    return app


def serve(remover: Remover, host: str, port: int, demo_warning: str | None,
          max_upload_bytes: int, max_pixels: int) -> None:
    import uvicorn

    app = create_app(remover, demo_warning, max_upload_bytes, max_pixels)
    print(f"maskopt: open http://{host}:{port}/ (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
