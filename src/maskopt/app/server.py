"""`maskopt serve`: a local page that removes an object with a click (FastAPI + uvicorn).

The networks are loaded once. A photo is uploaded once and kept in memory: the
``KEPT_PHOTOS`` used most recently, within ``KEPT_BYTES``; nothing is written to disk
but a temporary file while it is decoded. Each click or box runs the segmenters and
the inpainters on it, one request at a time (the networks use every core). Every
failure is a JSON ``{"error": ...}`` that the page shows, and the server keeps serving.

The page has no login, so the server answers only requests a page on another origin
cannot make: the Host must be one it serves under (no DNS rebinding), a POST must
carry the page's own content type (which a cross-origin page can only send after a
preflight the server never grants) and no foreign Origin.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from importlib.resources import files
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from maskopt.core.errors import MaskoptError
from maskopt.core.io import read_rgb
from maskopt.removal.remover import NoSegmentError, Remover, max_grow

PAGE = files("maskopt.app") / "page"
KEPT_PHOTOS = 8
KEPT_BYTES = 512 << 20  # decoded photos kept at once (a 40 MP photo is 120 MB)
SEGMENT_COLOUR = np.array([0, 110, 255])  # the pretrained segmenter's segment: blue
LEARNED_COLOUR = np.array([255, 140, 0])  # what the learned mask adds: orange
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# the content type each POST must carry: neither is one a cross-origin page may send
# without a CORS preflight, which this server never answers
POST_TYPES = {"/api/photo": "application/octet-stream", "/api/remove": "application/json"}


class PickRequest(BaseModel):
    photo: str
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    grow: int = Field(0, ge=0)


class UserError(Exception):
    """A request the page can say something about (HTTP ``status``; ``extra`` goes into
    the JSON beside the message)."""

    def __init__(self, message: str, status: int = 422, **extra):
        super().__init__(message)
        self.status = status
        self.extra = extra


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


class PhotoStore:
    """The uploaded photos, shared by every client: the ``count`` used most recently,
    within ``max_bytes`` (the newest is always kept)."""

    def __init__(self, count: int = KEPT_PHOTOS, max_bytes: int = KEPT_BYTES):
        self.count, self.max_bytes = count, max_bytes
        self._photos: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, rgb: np.ndarray) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._photos[key] = rgb
            while len(self._photos) > 1 and (
                    len(self._photos) > self.count
                    or sum(p.nbytes for p in self._photos.values()) > self.max_bytes):
                self._photos.popitem(last=False)
        return key

    def use(self, key: str) -> np.ndarray:
        """The photo, now the most recently used; a UserError when it was dropped."""
        with self._lock:
            if key not in self._photos:
                raise UserError(
                    f"this photo is no longer on the server: it keeps the {self.count} photos "
                    f"used most recently (at most {self.max_bytes / 2**20:.0f} MiB), and "
                    "others were opened since; open it again", 404)
            self._photos.move_to_end(key)
            return self._photos[key]


def allowed_hosts(host: str, extra: list[str] = ()) -> list[str]:
    """The Host names the page answers under: loopback, the address it listens on and
    ``extra``; listening on every address adds this machine's names."""
    names = [*LOOPBACK_NAMES, host, *extra]
    if host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    return sorted({n.lower() for n in names if n})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(remover: Remover, demo_warning: str | None, max_upload_bytes: int,
               max_pixels: int, hosts: list[str] = LOOPBACK_NAMES,
               photos: PhotoStore | None = None) -> FastAPI:
    """The page and its API, answering under ``hosts`` only."""
    app = FastAPI(title="maskopt", docs_url=None, redoc_url=None, openapi_url=None)
    _guard(app, hosts)
    _serve_page(app, remover, demo_warning, max_upload_bytes)
    _serve_api(app, remover, photos or PhotoStore(), max_upload_bytes, max_pixels)
    return app


def _guard(app: FastAPI, hosts: list[str]) -> None:
    """Refuse what a page elsewhere could send, and answer every error as JSON."""
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))

    @app.middleware("http")
    async def same_origin_posts_only(request: Request, call_next):
        if request.method == "POST":
            wanted = POST_TYPES.get(request.url.path)
            given = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if wanted is not None and given != wanted:
                return JSONResponse({"error": f"this request must be sent as {wanted}, by "
                                              "the page itself"}, status_code=415)
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
                return JSONResponse({"error": f"requests from {origin} are refused"},
                                    status_code=403)
        return await call_next(request)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'the request'}: "
                             f"{e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"bad request ({problems})"}, status_code=422)


def _serve_page(app: FastAPI, remover: Remover, demo_warning: str | None,
                max_upload_bytes: int) -> None:
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


def _serve_api(app: FastAPI, remover: Remover, photos: PhotoStore, max_upload_bytes: int,
               max_pixels: int) -> None:
    busy = threading.Lock()  # one photo at a time: the networks already use every core

    @app.post("/api/photo")
    async def upload(request: Request) -> Response:
        data = bytearray()
        try:
            async for chunk in request.stream():  # stop reading at the limit
                data += chunk
                if len(data) > max_upload_bytes:
                    raise UserError(f"the upload is larger than {max_upload_bytes / 1e6:.0f} "
                                    "MB (maskopt serve --max-upload-mb)", 413)
        except ClientDisconnect:  # the page was closed mid-upload: nobody to answer
            return Response(status_code=400)
        # decoding takes up to seconds: off the event loop, which keeps serving
        rgb = await run_in_threadpool(decode_upload, bytes(data),
                                      request.headers.get("x-filename", ""), max_pixels)
        height, width = rgb.shape[:2]
        return JSONResponse({"photo": photos.add(rgb), "width": width, "height": height,
                             "max_grow": max_grow(height, width)})

    @app.post("/api/remove")
    def remove(pick: PickRequest) -> dict:
        rgb = photos.use(pick.photo)
        if (pick.point is None) == (pick.box is None):
            raise UserError("click the object, or drag a box around it")
        started = time.perf_counter()
        with busy:
            try:
                selection = remover.select(rgb, point=pick.point, box=pick.box)
                mask = selection.mask(pick.grow)
                result = remover.fill(rgb, mask, selection)
            except NoSegmentError as exc:
                raise UserError(str(exc), nearby=exc.nearby) from None
            except MaskoptError as exc:
                raise UserError(str(exc)) from None
        seconds = time.perf_counter() - started
        return {"overlay": png_data_url(overlay(rgb, mask, selection.pretrained)),
                "mask": png_data_url(mask.astype(np.uint8) * 255),
                "result": png_data_url(result),
                "removed": ", ".join(f"{name} (score {score:.2f})"
                                     for name, score in selection.removed),
                "mask_share": float(mask.mean()), "seconds": round(seconds, 3)}


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, or a MaskoptError saying why not (before the
    page's address is printed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MaskoptError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); another "
                           "program may use that port: choose another with --port") from None
    return sock


def serve(remover: Remover, host: str, port: int, demo_warning: str | None,
          max_upload_bytes: int, max_pixels: int, extra_hosts: list[str] = ()) -> None:
    import uvicorn

    hosts = allowed_hosts(host, list(extra_hosts))
    app = create_app(remover, demo_warning, max_upload_bytes, max_pixels, hosts)
    sock = listening_socket(host, port)
    if not is_loopback(host):
        print(f"warning: listening on {host}: the page has no login, so anyone who can "
              f"reach this machine can use it; it answers under the names {', '.join(hosts)} "
              "(--allow-host adds one)", file=sys.stderr)
    shown = ("127.0.0.1" if host in ("0.0.0.0", "::", "") else
             f"[{host}]" if ":" in host else host)
    print(f"maskopt: open http://{shown}:{sock.getsockname()[1]}/ (Ctrl+C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
