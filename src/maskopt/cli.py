"""`maskopt` command line: `maskopt remove PHOTO --point X,Y -o OUT` (see README)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskopt.errors import MaskoptError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_MAX_PIXELS = 40_000_000  # ≈ 40 MP: the photo, its copies and masks stay well under 1 GB


def _numbers(text: str, count: int, what: str) -> tuple[float, ...]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{what} must be {count} comma-separated numbers, "
                                         f"got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskopt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    rm = commands.add_parser("remove", help="remove an object from photos")
    rm.add_argument("photo", type=Path, help="an image file, or a folder of images")
    pick = rm.add_mutually_exclusive_group(required=True)
    pick.add_argument("--point", type=lambda t: _numbers(t, 2, "--point"), metavar="X,Y",
                      help="remove the segment under this pixel")
    pick.add_argument("--box", type=lambda t: _numbers(t, 4, "--box"), metavar="X0,Y0,X1,Y1",
                      help="remove the segment that best fills this box")
    pick.add_argument("--class", dest="category", metavar="NAME",
                      help="remove every segment of this class (e.g. person)")
    pick.add_argument("--mask", type=Path, metavar="ROUGH.png",
                      help="remove the segment that overlaps this rough mask most")
    rm.add_argument("-o", "--output", type=Path, required=True,
                    help="output file (or folder when PHOTO is a folder)")
    rm.add_argument("--save-mask", action="store_true",
                    help="also write the mask used, as NAME.mask.png")
    rm.add_argument("--models", type=Path, default=Path("models/joint.pt"),
                    help="model file from `dvc repro train_joint` (default: %(default)s)")
    rm.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rm.add_argument("--min-score", type=float, default=0.3,
                    help="ignore detections below this score (default: %(default)s)")
    rm.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help="refuse larger images (default: %(default)s)")
    return parser


def _inputs_and_outputs(photo: Path, output: Path) -> list[tuple[Path, Path]]:
    if photo.is_dir():
        files = sorted(p for p in photo.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MaskoptError(f"{photo}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if output.exists() and not output.is_dir():
            raise MaskoptError(f"{output}: exists and is not a folder")
        return [(p, output / f"{p.stem}.png") for p in files]
    if not photo.exists():
        raise MaskoptError(f"{photo}: image file not found")
    if output.is_dir():
        return [(photo, output / f"{photo.stem}.png")]
    return [(photo, output)]


def _remove_one(remover, source: Path, target: Path, args) -> None:
    from maskopt.io import read_rgb, write_png

    rgb, _ = read_rgb(source, max_pixels=args.max_pixels)
    rough = None
    if args.mask is not None:
        rough_rgb, _ = read_rgb(args.mask, max_pixels=args.max_pixels)
        rough = rough_rgb.max(axis=2) > 127
    result = remover(rgb, point=args.point, box=args.box, category=args.category,
                     rough_mask=rough)
    suffix = target.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        from PIL import Image

        from maskopt.io import atomic_path

        with atomic_path(target) as tmp:
            Image.fromarray(result.image).save(tmp, format="JPEG", quality=95)
    else:
        write_png(target.with_suffix(".png") if suffix != ".png" else target, result.image)
    if args.save_mask:
        write_png(target.with_name(f"{target.stem}.mask.png"),
                  result.mask.astype(np.uint8) * 255)


def remove_command(args) -> int:
    from maskopt.removal import Remover

    pairs = _inputs_and_outputs(args.photo, args.output)
    remover = Remover(args.models, args.device, args.min_score)
    failures = 0
    many = len(pairs) > 1 or args.photo.is_dir()
    for source, target in tqdm(pairs, desc="remove", unit="img", disable=not many):
        try:
            _remove_one(remover, source, target, args)
        except MaskoptError as exc:
            if not many:
                raise
            failures += 1
            tqdm.write(f"skipped {source}: {exc}")
    if failures:
        print(f"error: {failures} of {len(pairs)} images failed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "remove":
            return remove_command(args)
    except MaskoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
