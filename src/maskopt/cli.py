"""`maskopt` command line: `maskopt remove PHOTO --point X,Y -o OUT`, `maskopt info`
(see README). Heavy imports (torch) happen only once the arguments are checked."""

from __future__ import annotations

import argparse
import sys
import time
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maskopt")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _PrintVersion(argparse.Action):
    """--version, looked up only when asked (package metadata costs every start-up)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"maskopt {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskopt", description=__doc__)
    parser.add_argument("--version", nargs=0, action=_PrintVersion,
                        help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="what a model file holds and how it was trained")
    info.add_argument("model", type=Path, nargs="?",
                      help="model file (default: found as for `remove`)")
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
    rm.add_argument("--models", type=Path, default=None,
                    help="model file from `dvc repro train_joint` (default: $MASKOPT_MODELS, "
                         "else ./models/joint.pt, else the installed project's)")
    rm.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CUDA when present (default)")
    rm.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="auto: bfloat16 where the device runs it fast (default)")
    rm.add_argument("-q", "--quiet", action="store_true",
                    help="print nothing on success (errors still go to stderr)")
    rm.add_argument("--min-score", type=float, default=None,
                    help="ignore detections below this score (default: the model's "
                         "selection threshold, maskopt.models.selection.MIN_SCORE)")
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


def _read(source: Path, args) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo and, with --mask, the rough mask."""
    from maskopt.io import read_rgb

    rgb, _ = read_rgb(source, max_pixels=args.max_pixels)
    rough = None
    if args.mask is not None:
        rough_rgb, _ = read_rgb(args.mask, max_pixels=args.max_pixels)
        rough = rough_rgb.max(axis=2) > 127
    return rgb, rough


def _write(target: Path, result, args) -> Path:
    """Write the result (and, with --save-mask, the mask); returns the path written."""
    from maskopt.io import atomic_path, write_png

    suffix = target.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        from PIL import Image

        with atomic_path(target) as tmp:
            Image.fromarray(result.image).save(tmp, format="JPEG", quality=95)
    else:
        target = target.with_suffix(".png") if suffix != ".png" else target
        write_png(target, result.image)
    if args.save_mask:
        write_png(target.with_name(f"{target.stem}.mask.png"),
                  result.mask.astype(np.uint8) * 255)
    return target


def _line(source: Path, target: Path, result, seconds: float) -> str:
    return (f"{source}: removed {_summary(result.removed)}; mask {result.mask.mean():.1%} "
            f"of the image; wrote {target} ({seconds:.2f} s)")


def _summary(removed: list[tuple[str, float]]) -> str:
    """"person (score 0.84)", or "3 × person (scores 0.30–0.84)" for a whole class."""
    parts = []
    for name in dict.fromkeys(n for n, _ in removed):
        scores = sorted(s for n, s in removed if n == name)
        parts.append(f"{name} (score {scores[0]:.2f})" if len(scores) == 1 else
                     f"{len(scores)} × {name} (scores {scores[0]:.2f}–{scores[-1]:.2f})")
    return ", ".join(parts)


def _warn_if_demo(path: Path, trained_on: dict | None) -> None:
    if trained_on is None:
        print(f"warning: {path} does not record how it was trained (made by an older "
              "maskopt); if it came from the sample profile it is a 64 px demo",
              file=sys.stderr)
    elif trained_on.get("data_source") == "sample":
        print(f"warning: {path} was trained on the synthetic sample "
              f"({trained_on.get('image_size')} px scenes, {trained_on.get('train_pairs')} "
              "pairs): a demo of the method, not a model for real photos; train the COCO "
              "profile (params-coco.yaml) for those", file=sys.stderr)


def remove_command(args) -> int:
    from maskopt.locate import find_model

    pairs = _inputs_and_outputs(args.photo, args.output)
    model = find_model(args.models)
    from maskopt.removal import Remover  # torch: only once the arguments are good

    options = {} if args.min_score is None else {"min_score": args.min_score}
    remover = Remover(model, args.device, precision=args.precision, **options)
    _warn_if_demo(model, remover.nets.trained_on)
    many = len(pairs) > 1 or args.photo.is_dir()
    failures = 0
    for source, target in tqdm(pairs, desc="remove", unit="img", disable=not many or args.quiet):
        try:
            rgb, rough = _read(source, args)
            started = time.perf_counter()
            result = remover(rgb, point=args.point, box=args.box, category=args.category,
                             rough_mask=rough)
            seconds = time.perf_counter() - started
            written = _write(target, result, args)
        except MaskoptError as exc:
            if not many:
                raise
            failures += 1
            tqdm.write(f"skipped {source}: {exc}")
            continue
        if not args.quiet:
            tqdm.write(_line(source, written, result, seconds))
    if failures:
        print(f"error: {failures} of {len(pairs)} images failed", file=sys.stderr)
        return 1
    return 0


def info_command(args) -> int:
    from maskopt.locate import find_model

    model = find_model(args.model)
    from maskopt.models.build import describe_model

    print(describe_model(model))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "remove":
            return remove_command(args)
        if args.command == "info":
            return info_command(args)
    except MaskoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
