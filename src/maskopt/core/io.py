"""File helpers: atomic writes and image reading with clear errors.

Everything a stage writes goes to a temporary sibling first and is renamed into
place, so a killed stage never leaves a half-written file that DVC or the next
stage could take for finished.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskopt.core.errors import MaskoptError


@contextmanager
def atomic_path(target: str | Path):
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Works for files and for directories (the caller creates what it needs at the
    yielded path). On failure the temporary path is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                                dir=target.parent))
    staging = tmp / target.name
    try:
        yield staging
        if target.is_dir() and not target.is_symlink():
            old = _previous(target)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_staging(target: Path) -> None:
    """Clear up after a writer of ``target`` that was killed: remove its staging folder
    (its process, named in it, is gone), and put back the previous folder it had moved
    aside, unless the new one is already in place."""
    old = _previous(target)
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(target)
    own = re.compile(re.escape(f".{target.name}.") + r"(\d+)\.[a-z0-9_]+\.tmp")
    for sibling in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        found = own.fullmatch(sibling.name)
        if found and not _alive(int(found.group(1))):
            shutil.rmtree(sibling, ignore_errors=True)


def _previous(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MaskoptError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise MaskoptError(f"{path}: broken JSON ({exc.msg} at line {exc.lineno})") from exc


def read_rgb(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """Read an image as HxWx3 uint8 RGB; return it with the mode it was stored in.

    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are
    converted; EXIF orientation is applied. Unreadable or truncated files raise
    MaskoptError naming the file. With ``max_pixels``, larger images are refused
    from their header, before any pixel is decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise MaskoptError(f"{path}: image is {width}x{height} = "
                                   f"{width * height / 1e6:.1f} MP, above the limit of "
                                   f"{max_pixels / 1e6:.1f} MP (raise --max-pixels, or "
                                   "downscale it first)")
            image.load()
            mode = image.mode
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image), mode
    except FileNotFoundError as exc:
        raise MaskoptError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise MaskoptError(f"{path}: unreadable or truncated image ({exc})") from exc


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        gray = np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write an array as PNG atomically (uint8 HxW or HxWx3)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_image(path: Path, array: np.ndarray) -> None:
    """Write a user-facing image atomically: JPEG (quality 95) for .jpg/.jpeg, else PNG.
    A file that cannot be written (read-only folder, full disk) is a MaskoptError, and
    what was at ``path`` before stays."""
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format="JPEG" if jpeg else "PNG",
                                        **({"quality": 95} if jpeg else {}))
    except OSError as exc:
        raise MaskoptError(f"{path}: cannot write ({exc.strerror or exc})") from None


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1, upright, when it has none)."""
    try:
        with Image.open(path) as image:
            return int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError):
        return 1
