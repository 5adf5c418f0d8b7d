"""Which files `maskopt remove` and `maskopt mask` will write, checked before any is.

A user points these commands at their own photos. Every file a run would write is
planned first and the plan is refused, with the reason, when a file written is one of
the inputs (the photo, a rough mask, the photos' folder) or two photos would write the
same file (``x.jpg`` and ``x.png`` both give ``x.png``). Kept free of torch, so the
refusal comes before the slow imports.
"""

from __future__ import annotations

import os
from pathlib import Path

from maskopt.core.errors import MaskoptError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def photos_in(photo: Path) -> list[Path]:
    """The photo, or the images of a folder."""
    if photo.is_dir():
        files = sorted(p for p in photo.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MaskoptError(f"{photo}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not photo.exists():
        raise MaskoptError(f"{photo}: image file not found")
    return [photo]


def same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:  # one of them does not exist yet
        return False


def output_folder(output: Path, photo: Path) -> Path:
    """``output`` as the folder results go to; never the photos' own folder, where a
    result could take the name of another photo (``x.jpg``'s result is ``x.png``)."""
    if output.exists() and not output.is_dir():
        raise MaskoptError(f"{output}: exists and is not a folder")
    if same_file(output, photo if photo.is_dir() else photo.parent):
        raise MaskoptError(f"{output}: is the folder of the photos; the results would "
                           "overwrite or mix with them: choose another output folder (-o)")
    return output


def check_outputs(plan: dict[Path, list[Path]], inputs: list[Path]) -> None:
    """Refuse a plan (photo -> files it writes) in which two photos write the same file
    or a file written is one of ``inputs`` (see :func:`same_file`)."""
    by_path = {given.resolve(): given for given in inputs}
    by_inode = {_inode(given): given for given in inputs if given.exists()}
    writers: dict[Path, Path] = {}
    for source, targets in plan.items():
        for target in targets:
            key = target.resolve()
            if key in writers:
                raise MaskoptError(f"{writers[key]} and {source} would both write {target}; "
                                   "rename one of them, or process them separately")
            writers[key] = source
            given = by_path.get(key) or (by_inode.get(_inode(target)) if target.exists()
                                         else None)
            if given is not None:
                raise MaskoptError(f"{target}: is an input ({given}) and would be "
                                   "overwritten; choose another output (-o)")


def _inode(path: Path) -> tuple[int, int]:
    """What os.path.samefile compares: the file's device and inode."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def result_path(target: Path) -> Path:
    """Where a result named ``target`` goes: JPEG stays JPEG, anything else is PNG."""
    if target.suffix.lower() in (".jpg", ".jpeg", ".png"):
        return target
    return target.with_suffix(".png")


def mask_path(result: Path) -> Path:
    """Where ``remove --save-mask`` puts a result's mask: NAME_mask.png, as `mask` and
    LaMa name it."""
    return result.with_name(f"{result.stem}_mask.png")


def removal_plan(photo: Path, output: Path, save_mask: bool,
                 rough_mask: Path | None = None) -> dict[Path, Path]:
    """photo -> its result file, for `remove PHOTO -o OUTPUT`, checked."""
    sources = photos_in(photo)
    if photo.is_dir():
        folder = output_folder(output, photo)
        results = {p: folder / f"{p.stem}.png" for p in sources}
    elif output.is_dir():
        results = {photo: output_folder(output, photo) / f"{photo.stem}.png"}
    else:
        results = {photo: result_path(output)}
    check_outputs({p: [r, *([mask_path(r)] if save_mask else [])] for p, r in results.items()},
                  _inputs(sources, rough_mask))
    return results


def mask_plan(photo: Path, output: Path, layout: str,
              rough_mask: Path | None = None) -> dict[Path, tuple[Path, Path | None]]:
    """photo -> (its mask file, its copy or None), for `mask PHOTO -o OUTPUT`, checked.

    ``layout`` lama: NAME_mask.png beside a copy of the photo, NAME.png; masks: NAME.png."""
    sources = photos_in(photo)
    folder = output_folder(output, photo)
    if layout == "lama":
        plan = {p: (folder / f"{p.stem}_mask.png", folder / f"{p.stem}.png") for p in sources}
    else:
        plan = {p: (folder / f"{p.stem}.png", None) for p in sources}
    check_outputs({p: [t for t in targets if t is not None] for p, targets in plan.items()},
                  _inputs(sources, rough_mask))
    return plan


def _inputs(sources: list[Path], rough_mask: Path | None) -> list[Path]:
    return [*sources, *([rough_mask] if rough_mask is not None else [])]
