"""`maskopt` command line: `maskopt remove PHOTO --point X,Y -o OUT`, `maskopt mask`,
`maskopt serve`, `maskopt info` (see README). Heavy imports (torch) happen only once the
arguments are checked."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskopt.app.output_plan import mask_path, mask_plan, removal_plan
from maskopt.core.errors import MaskoptError

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


def _add_selection(command: argparse.ArgumentParser, verb: str) -> None:
    """What `remove` and `mask` share: which segment, which model, which mask."""
    command.add_argument("photo", type=Path, help="an image file, or a folder of images")
    pick = command.add_mutually_exclusive_group(required=True)
    pick.add_argument("--point", type=lambda t: _numbers(t, 2, "--point"), metavar="X,Y",
                      help=f"{verb} the segment under this pixel")
    pick.add_argument("--box", type=lambda t: _numbers(t, 4, "--box"), metavar="X0,Y0,X1,Y1",
                      help=f"{verb} the segment that best fills this box")
    pick.add_argument("--class", dest="category", metavar="NAME",
                      help=f"{verb} every segment of this class (e.g. person)")
    pick.add_argument("--mask", type=Path, metavar="ROUGH.png",
                      help=f"{verb} the segment that overlaps this rough mask most")
    command.add_argument("--grow", type=int, default=0, metavar="PX",
                         help="grow the mask by a further fixed margin, up to a tenth of the "
                              "photo's longer side (default 0)")
    command.add_argument("--learned-margin", choices=["on", "off"], default="on",
                         help="off: the pretrained segmenter's segment (models/segmenter.pt "
                              "beside the model) instead of the learned mask, e.g. with "
                              "--grow, to compare (default on)")
    _add_model_options(command)
    command.add_argument("-q", "--quiet", action="store_true",
                         help="print nothing on success (errors still go to stderr)")


def _add_model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--models", type=Path, default=None,
                         help="model file from `dvc repro train_joint` (default: "
                              "$MASKOPT_MODELS, else ./models/joint.pt, else the installed "
                              "project's)")
    command.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                         help="auto: CUDA when present (default)")
    command.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                         help="auto: bfloat16 where the device runs it fast (default)")
    command.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                         help="refuse larger images (default: %(default)s)")
    command.add_argument("--min-score", type=float, default=None,
                         help="segments are the detections scoring at least this (default 0.5, "
                              "PanopticFPN's; maskopt.models.selection.PANOPTIC_SCORE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskopt", description=__doc__)
    parser.add_argument("--version", nargs=0, action=_PrintVersion,
                        help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="what a model file holds and how it was trained")
    info.add_argument("model", type=Path, nargs="?",
                      help="model file (default: found as for `remove`)")
    rm = commands.add_parser("remove", help="remove an object from photos")
    _add_selection(rm, "remove")
    rm.add_argument("-o", "--output", type=Path, required=True,
                    help="output file (or folder when PHOTO is a folder)")
    rm.add_argument("--save-mask", action="store_true",
                    help="also write the mask used, as NAME_mask.png beside the result")
    rm.add_argument("--inpainter", metavar="CMD", default=None,
                    help="fill with an external inpainter instead of the model's, e.g. "
                         "\"iopaint run --model lama --device cpu --image {images} --mask "
                         "{masks} --output {output}\" (placeholders as for "
                         "evaluate.external_inpainters)")
    mask = commands.add_parser(
        "mask", help="write the learned mask of a segment, for LaMa, IOPaint or any inpainter")
    _add_selection(mask, "mask")
    mask.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    mask.add_argument("--layout", choices=["lama", "masks"], default="lama",
                      help="lama: NAME.png (the photo) + NAME_mask.png, as LaMa's "
                           "bin/predict.py reads; masks: NAME.png masks only, for `iopaint "
                           "run --image PHOTOS --mask OUT` (default lama)")
    serve = commands.add_parser("serve", help="a local page: open a photo, click, remove")
    _add_model_options(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=int, default=8765, help="default %(default)s")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also answer requests addressed to this host name (the page "
                            "answers only under its own address and 127.0.0.1/localhost, "
                            "against DNS rebinding; repeatable)")
    serve.add_argument("--max-upload-mb", type=float, default=25.0,
                       help="refuse larger uploads (default %(default)s)")
    repro = commands.add_parser(
        "repro", help="`dvc repro`, running stages that do not depend on each other side by "
                      "side (what `make pipeline` runs)")
    repro.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    repro.add_argument("-j", "--jobs", type=int, default=None,
                       help="stages at a time (default: 2 on a CPU of 2 cores or more, 1 "
                            "with a GPU; 1 = one stage at a time, as `dvc repro`)")
    repro.add_argument("--cores", type=int, default=None,
                       help="CPU cores to share among the stages' torch threads "
                            "(default: those this process may use)")
    repro.add_argument("-f", "--force", action="store_true",
                       help="rerun stages even when unchanged (dvc repro --force)")
    repro.add_argument("-S", "--set-param", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="change params.yaml first, as `dvc exp run -S` (repeatable)")
    repro.add_argument("-n", "--name", default=None,
                       help="save the result as this DVC experiment (`dvc exp save`), "
                            "as `dvc exp run -n` does")
    repro.add_argument("--baseline", action="store_true",
                       help="save the result as experiment `baseline`, replacing an "
                            "earlier one: what later experiments on this machine are "
                            "compared with (`make pipeline`)")
    compare = commands.add_parser(
        "compare", help="per-pair PSNR/SSIM differences of the headline rows between two "
                        "runs, with 95 %% intervals")
    compare.add_argument("a", nargs="?", default="baseline",
                         help="DVC revision or experiment (default: %(default)s)")
    compare.add_argument("b", nargs="?", default="workspace",
                         help="DVC revision or experiment (default: the workspace)")
    return parser


def _read(source: Path, args) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo and, with --mask, the rough mask."""
    from maskopt.core.io import read_rgb

    rgb, _ = read_rgb(source, max_pixels=args.max_pixels)
    rough = None
    if args.mask is not None:
        rough_rgb, _ = read_rgb(args.mask, max_pixels=args.max_pixels)
        rough = rough_rgb.max(axis=2) > 127
    return rgb, rough


def _write(target: Path, result, save_mask: bool) -> None:
    """Write the result (and, with --save-mask, the mask beside it)."""
    from maskopt.core.io import write_image

    write_image(target, result.image)
    if save_mask:
        write_image(mask_path(target), result.mask.astype(np.uint8) * 255)


def _line(source: Path, target: Path, result) -> str:
    return (f"{source}: removed {_summary(result.removed)}; mask {result.mask.mean():.1%} "
            f"of the image; wrote {target}")


def _summary(removed: list[tuple[str, float]]) -> str:
    """"person (score 0.84)", or "3 × person (scores 0.30–0.84)" for a whole class."""
    parts = []
    for name in dict.fromkeys(n for n, _ in removed):
        scores = sorted(s for n, s in removed if n == name)
        parts.append(f"{name} (score {scores[0]:.2f})" if len(scores) == 1 else
                     f"{len(scores)} × {name} (scores {scores[0]:.2f}–{scores[-1]:.2f})")
    return ", ".join(parts)


def demo_warning(path: Path, trained_on: dict | None) -> str | None:
    """What to tell a user of a model that is the synthetic 64 px sample (or may be)."""
    if trained_on is None:
        return (f"{path} does not record how it was trained (made by an older maskopt); if "
                "it came from the sample profile it is a demo trained on synthetic scenes")
    if trained_on.get("data_source") == "sample":
        return (f"{path} was trained on the synthetic sample ({trained_on.get('image_size')} "
                f"px scenes, {trained_on.get('train_pairs')} pairs): a demo of the method, "
                "not a model for real photos; train the COCO profile (params-coco.yaml) for "
                "those")
    return None


def _remover(args):
    """The networks, loaded once (torch is imported only here, once the arguments are
    good), with the pretrained segmenter where it is needed or shown."""
    from maskopt.removal.locate import find_model, pretrained_segmenter_beside

    model = find_model(args.models)
    pretrained = pretrained_segmenter_beside(model, required=getattr(
        args, "learned_margin", "on") == "off")
    from maskopt.removal.remover import Remover

    options = {} if args.min_score is None else {"min_score": args.min_score}
    remover = Remover(model, args.device, precision=args.precision,
                      pretrained_segmenter=pretrained, **options)
    warning = demo_warning(model, remover.nets.trained_on)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return remover, warning


def _each_photo(pairs, args, work, desc: str | None = None) -> int:
    """``work(source, target)`` for every photo; in a folder a bad photo is skipped with
    its reason, one photo's error is the command's."""
    many = len(pairs) > 1 or args.photo.is_dir()
    failures = 0
    for source, target in tqdm(pairs, desc=desc or args.command, unit="img",
                               disable=not many or args.quiet):
        try:
            started = time.perf_counter()
            line = work(source, target)
        except MaskoptError as exc:
            if not many:
                raise
            failures += 1
            tqdm.write(f"skipped {source}: {exc}")
            continue
        if not args.quiet and line:
            tqdm.write(f"{line} ({time.perf_counter() - started:.2f} s)")
    if failures:
        print(f"error: {failures} of {len(pairs)} images failed", file=sys.stderr)
        return 1
    return 0


def _selection(remover, rgb, rough, args):
    return remover.select(rgb, point=args.point, box=args.box, category=args.category,
                          rough_mask=rough)


def remove_command(args) -> int:
    results = removal_plan(args.photo, args.output, args.save_mask, args.mask)
    remover, _ = _remover(args)
    if args.inpainter is not None:
        return _remove_with_external(list(results.items()), args, remover)

    def work(source, target):
        from maskopt.removal.remover import Removal

        rgb, rough = _read(source, args)
        selection = _selection(remover, rgb, rough, args)
        mask = selection.mask(args.grow, args.learned_margin == "on")
        result = Removal(remover.fill(rgb, mask, selection), mask, selection.removed)
        _write(target, result, args.save_mask)
        return _line(source, target, result)

    return _each_photo(list(results.items()), args, work)


def _remove_with_external(pairs, args, remover) -> int:
    """--inpainter: every photo's mask first, then the inpainter once over all of them (a
    tool such as IOPaint loads its model once per run), then each result. A command that
    fails writes nothing; a photo it left without a result is skipped."""
    from maskopt.evaluation.external import ExternalRun
    from maskopt.removal.remover import Removal

    with ExternalRun(args.inpainter) as run:
        chosen = {}

        def select(source, target):
            rgb, rough = _read(source, args)
            selection = _selection(remover, rgb, rough, args)
            mask = selection.mask(args.grow, args.learned_margin == "on")
            chosen[source] = (run.add(rgb, mask), selection.removed)
            return None

        selecting = _each_photo(pairs, args, select, desc="masks")
        if not chosen:
            return selecting
        run.run()

        def write(source, target):
            key, removed = chosen[source]
            result = Removal(*run.result(key), removed)
            _write(target, result, args.save_mask)
            return _line(source, target, result)

        writing = _each_photo([(s, t) for s, t in pairs if s in chosen], args, write,
                              desc="results")
    return max(selecting, writing)


def mask_command(args) -> int:
    """Masks in the layout LaMa's bin/predict.py (NAME.png + NAME_mask.png) or IOPaint's
    mask folder (NAME.png) reads: white (255) where the inpainter is to fill."""
    from maskopt.core.io import exif_orientation, write_image

    plan = mask_plan(args.photo, args.output, args.layout, args.mask)
    remover, _ = _remover(args)

    def work(source, targets):
        rgb, rough = _read(source, args)
        mask_file, photo_copy = targets
        orientation = exif_orientation(source) if photo_copy is None else 1
        if orientation != 1:
            # the mask is drawn on the upright photo; IOPaint reads the stored pixels
            raise MaskoptError(f"{source}: stored rotated (EXIF orientation "
                               f"{orientation}), and `iopaint run` reads the "
                               "stored pixels, so an upright mask would not fit it: use "
                               "--layout lama, which writes the upright photo beside its mask")
        selection = _selection(remover, rgb, rough, args)
        mask = selection.mask(args.grow, args.learned_margin == "on")
        if photo_copy is not None:
            write_image(photo_copy, rgb)
        write_image(mask_file, mask.astype(np.uint8) * 255)
        return (f"{source}: {_summary(selection.removed)}; mask {mask.mean():.1%} of the "
                f"image; wrote {mask_file}")

    return _each_photo(list(plan.items()), args, work)


def serve_command(args) -> int:
    from maskopt.app.server import serve

    remover, warning = _remover(args)
    serve(remover, args.host, args.port, warning, max_upload_bytes=int(args.max_upload_mb * 1e6),
          max_pixels=args.max_pixels, extra_hosts=args.allow_host)
    return 0


def repro_command(args) -> int:
    from maskopt.pipeline.repro import repro

    if args.baseline and args.name:
        raise MaskoptError("--baseline names the experiment `baseline`; drop --name")
    return repro(args.targets, args.jobs, args.cores, args.force, args.overrides,
                 "baseline" if args.baseline else args.name, replace=args.baseline)


def compare_command(args) -> int:
    from maskopt.evaluation.compare import compare_markdown, compare_runs, read_per_pair

    comparisons = compare_runs(read_per_pair(args.a), read_per_pair(args.b))
    print(compare_markdown(args.a, args.b, comparisons))
    return 0


def info_command(args) -> int:
    from maskopt.removal.locate import find_model

    model = find_model(args.model)
    from maskopt.models.build import describe_model

    print(describe_model(model))
    return 0


def _negative_values_joined(argv: list[str]) -> list[str]:
    """``--point -1,10`` as ``--point=-1,10``: argparse takes a value that starts with
    "-" and is not a single number for an option, and would say "expected one argument"
    instead of what is wrong with the point."""
    joined, rest = [], iter(argv)
    for word in rest:
        if word in ("--point", "--box"):
            value = next(rest, None)
            if value is not None and value.startswith("-"):
                joined.append(f"{word}={value}")
                continue
            joined += [word] if value is None else [word, value]
        else:
            joined.append(word)
    return joined


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(_negative_values_joined(argv))
    try:
        commands = {"remove": remove_command, "mask": mask_command, "serve": serve_command,
                    "info": info_command, "repro": repro_command, "compare": compare_command}
        return commands[args.command](args)
    except MaskoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
