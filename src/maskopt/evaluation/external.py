"""External inpainters (LaMa, MAT, … through IOPaint or their own scripts) on a folder
of exported images and masks: rows of the evaluation, and `maskopt remove --inpainter`.

The export has the two layouts such tools read:

    images/NAME.png, masks/NAME.png    `iopaint run --image images --mask masks --output OUT`
    lama/NAME.png, lama/NAME_mask.png  LaMa's `bin/predict.py indir=lama outdir=OUT`

A command is a string with the placeholders ``{images}``, ``{masks}``, ``{lama}`` and
``{output}`` (absolute folders), split like a shell line and run without a shell. Its
results are read back as ``OUT/NAME.png`` (IOPaint) or ``OUT/NAME_mask.png`` (LaMa) and
composited with the input outside the mask, so every row is scored on the same pixels.
Masks are white (255) on the hole, black elsewhere.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from maskopt.core.errors import MaskoptError

PLACEHOLDERS = ("images", "masks", "lama", "output")


def export_pair(folder: Path, name: str, rgb: np.ndarray, mask: np.ndarray) -> None:
    """Write one test image and its mask (H×W bool) in both layouts."""
    for sub in ("images", "masks", "lama"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    hole = Image.fromarray(mask.astype(np.uint8) * 255)
    Image.fromarray(rgb).save(folder / "images" / f"{name}.png")
    hole.save(folder / "masks" / f"{name}.png")
    Image.fromarray(rgb).save(folder / "lama" / f"{name}.png")
    hole.save(folder / "lama" / f"{name}_mask.png")


def run_inpainter(name: str, command: str, folder: Path, output: Path,
                  timeout: float | None = None) -> None:
    """Run one external inpainter's command on the export in ``folder``; a missing
    program, a failure or a bad placeholder is a MaskoptError naming the inpainter."""
    output.mkdir(parents=True, exist_ok=True)
    places = {"images": folder / "images", "masks": folder / "masks", "lama": folder / "lama",
              "output": output}
    try:
        argv = [part.format(**{k: str(v.resolve()) for k, v in places.items()})
                for part in shlex.split(command)]
    except (KeyError, IndexError, ValueError) as exc:
        raise MaskoptError(f"external inpainter {name}: bad command {command!r} ({exc}); "
                           f"placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                           ) from exc
    if not argv:
        raise MaskoptError(f"external inpainter {name}: the command is empty")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise MaskoptError(f"external inpainter {name}: program {argv[0]!r} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise MaskoptError(f"external inpainter {name}: no result after {timeout:g} s") from exc
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MaskoptError(f"external inpainter {name}: exit code {done.returncode} "
                           f"({tail[0][:300]})")


def read_result(name: str, output: Path, image: str, rgb: np.ndarray,
                mask: np.ndarray) -> np.ndarray:
    """The inpainter's result for ``image``, its pixels outside ``mask`` taken from
    ``rgb``."""
    for candidate in (output / f"{image}.png", output / f"{image}_mask.png"):
        if candidate.exists():
            break
    else:
        raise MaskoptError(f"external inpainter {name}: wrote no result for {image} in "
                           f"{output} (looked for {image}.png and {image}_mask.png)")
    try:
        with Image.open(candidate) as result:
            filled = np.asarray(result.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise MaskoptError(f"external inpainter {name}: {candidate} is unreadable") from exc
    if filled.shape != rgb.shape:
        raise MaskoptError(f"external inpainter {name}: {candidate} is "
                           f"{filled.shape[1]}x{filled.shape[0]}, the input "
                           f"{rgb.shape[1]}x{rgb.shape[0]}")
    return np.where(mask[..., None], filled, rgb)


class ExternalRun:
    """Photos filled by an external inpainter in one run (``maskopt remove --inpainter``):
    each photo and its mask are exported as for the evaluation (:meth:`add`), the
    command runs once over all of them (:meth:`run`: a tool such as IOPaint loads its
    model once per run), and each result is read back inside its mask only
    (:meth:`result`). The photos wait on disk, not in memory; the folder goes on exit."""

    def __init__(self, command: str, timeout: float | None = None, name: str = "--inpainter"):
        self.command, self.timeout, self.name = command, timeout, name
        self._folder = tempfile.TemporaryDirectory(prefix="maskopt-inpainter-")
        self.folder = Path(self._folder.name)
        self.count = 0

    def __enter__(self) -> ExternalRun:
        return self

    def __exit__(self, *exc) -> None:
        self._folder.cleanup()

    def add(self, rgb: np.ndarray, mask: np.ndarray) -> str:
        """Export one photo and its mask (H×W bool); returns its key for :meth:`result`."""
        key = f"photo{self.count:06d}"
        self.count += 1
        export_pair(self.folder, key, rgb, mask)
        return key

    def run(self) -> None:
        run_inpainter(self.name, self.command, self.folder, self.folder / "output",
                      self.timeout)

    def result(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(the filled photo, its mask) of an added photo, after :meth:`run`."""
        with Image.open(self.folder / "images" / f"{key}.png") as image, \
                Image.open(self.folder / "masks" / f"{key}.png") as hole:
            rgb, mask = np.asarray(image.convert("RGB")), np.asarray(hole) > 127
        return read_result(self.name, self.folder / "output", key, rgb, mask), mask
