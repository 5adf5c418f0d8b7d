"""Seconds per photo of `maskopt remove` at 256 and 512 px, split into segmentation and
inpainting, beside OpenCV `inpaint` (Telea) on the same photo and mask; and the
command's start-up: importing what `remove` needs, each in a fresh process.

Each precision is timed with the plain networks (as training and evaluation run them)
and as `Remover` holds them (``maskopt.models.fast_inference.optimize_for_inference``): fp32,
and where the CPU has fast bf16 also bf16 with NCHW weights (norms folded, torchvision's
RoIAlign) and bf16 channels-last (what `remove` runs there), so the ratios say what
each part of the inference module buys.

By default the trained networks of models/joint.pt are timed. `--paper-scale` times
untrained networks of the paper's size instead (R50-FPN, width-64 inpainters at 256 px):
speed does not depend on the weights, except through how many detections the segmenter
finds (its mask head runs on each; the script prints how many). The mask is a fixed
ellipse covering ~10 % of the photo, so every run inpaints the same area. Run on an
idle machine.

    .venv/bin/python benchmarks/remove.py [--models models/joint.pt] [--paper-scale] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from paper_scale import paper_networks

from maskopt.core.device import autocast, cpu_has_fast_bf16
from maskopt.models.inference import Networks
from maskopt.models.selection import PANOPTIC_SCORE
from maskopt.removal.remover import Letterbox, Remover, _tensor


def photo_and_mask(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 3)
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size // 2), (size // 8, size // 4), 0, 0, 360, 1, -1)
    return image, mask.astype(bool)


def seconds(fn, repeat: int) -> float:
    """Best of ``repeat`` calls after a warm-up: this VM's speed swings by up to 1.5x
    within seconds, and the best call is the one that repeats from run to run."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def import_seconds(module: str, repeat: int = 3) -> float:
    """Best of ``repeat`` fresh interpreters importing ``module`` (its own start-up
    excluded by subtracting an empty interpreter's)."""
    def best(code: str) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(f"import {module}") - best("pass")


def peak_rss_mib(code: str) -> float:
    """Peak resident memory of a fresh interpreter running ``code`` (imports included)."""
    probe = (f"{code}\nimport resource\n"
             "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).parent).stdout
    return int(out.split("PEAK")[-1]) / 1024  # ru_maxrss is in KiB on Linux


def one_photo_code(paper_scale: bool, models: str) -> str:
    """What `remove` does to one 256 px photo (segment, then inpaint the fixed mask), in the
    precision `--precision auto` picks, as a script for ``peak_rss_mib``."""
    networks = ("networks=paper_networks()" if paper_scale
                else f"models={str(Path(models).resolve())!r}")
    return "\n".join([
        "import warnings, torch, remove as bench",
        "from paper_scale import paper_networks",
        "from maskopt.core.device import autocast",
        "from maskopt.removal.remover import Letterbox, Remover, _tensor",
        "warnings.simplefilter('ignore')",
        f"remover = Remover(device='cpu', {networks})",
        "image, mask = bench.photo_and_mask(256)",
        "lb = Letterbox.fit(256, 256, remover.nets.image_size)",
        "with torch.no_grad(), autocast(remover.device, remover.bf16):",
        "    det = remover.nets.segmenter.predict(_tensor(lb.image(image), 'cpu'),",
        "                                         min_score=remover.min_score)",
        "remover._inpaint(image, mask, det.semantic_logits, lb)",
    ])


def with_fixed_person(remover: Remover) -> Remover:
    """Untrained paper-scale networks find nobody: let the segmenter and its mask head do
    all their real work, then report one person filling the photo's middle quarter."""
    from maskopt.models.detections import Detections, SegmenterOutput

    segmenter = remover.nets.segmenter
    real_predict, real_mask_probs = segmenter.predict, segmenter.mask_probs
    s = remover.nets.image_size

    def predict(images, min_score=None):
        out = real_predict(images, min_score)
        person = Detections(torch.tensor([[s / 4, s / 4, 3 * s / 4, 3 * s / 4]]),
                            torch.ones(1, dtype=torch.long), torch.tensor([0.9]),
                            torch.ones(1, 1, 28, 28), (s, s))
        return SegmenterOutput([person], out.semantic_logits, out.features)

    def mask_probs(*args):
        return [torch.ones_like(p) for p in real_mask_probs(*args)]

    segmenter.predict, segmenter.mask_probs = predict, mask_probs
    return remover


def folder_throughput(remover: Remover, count: int, point: tuple[float, float] | None = None,
                      category: str | None = None, rounds: int = 5) -> None:
    """A folder of ``count`` 256 px photos through `maskopt remove` (decode and encode
    overlapped with the networks), against the networks alone on the same photos, model
    loading excluded from both. Sample test images (upscaled) where data/pairs has
    them, else blurred noise. The photos are split into ``rounds`` sub-folders, each
    timed both ways back to back: this VM's speed drifts by 1.5x within a minute, which
    made one long run of each give ratios from 0.73x to 0.98x for the same code."""
    import tempfile
    from unittest import mock

    from PIL import Image

    from maskopt.app import cli

    sources = sorted(Path("data/pairs/test/images").glob("*.png"))[:count]
    select = ["--point", f"{point[0]},{point[1]}"] if point else ["--class", category]
    networks = command = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "joint.pt"
        model_file.touch()  # found by the command; the patched Remover ignores it
        photos = []
        for k in range(count):
            if k < len(sources):
                image = Image.open(sources[k]).convert("RGB").resize((256, 256), Image.BICUBIC)
            else:
                noise = np.random.default_rng(k).integers(0, 256, (256, 256, 3), np.uint8)
                image = Image.fromarray(cv2.GaussianBlur(noise, (0, 0), 3))
            folder = Path(tmp) / f"in{k % rounds}"
            folder.mkdir(exist_ok=True)
            image.save(folder / f"{k:04d}.jpg", quality=95)
            photos.append(np.asarray(image))
        for r in range(rounds):
            start = time.perf_counter()
            for rgb in photos[r::rounds]:
                try:
                    remover(rgb, point=point, category=category)
                except Exception:  # noqa: BLE001 - a photo with no person: counted in both
                    pass
            networks += time.perf_counter() - start
            start = time.perf_counter()
            with mock.patch("maskopt.removal.remover.Remover", lambda *a, **k: remover):
                cli.main(["remove", str(Path(tmp) / f"in{r}"), *select, "--quiet",
                          "-o", str(Path(tmp) / f"out{r}"), "--models", str(model_file),
                          "--device", "cpu"])
            command += time.perf_counter() - start
    print(f"folder of {len(photos)} photos at 256 px in {rounds} rounds: networks alone "
          f"{networks / len(photos):.3f} s/photo, `maskopt remove` {command / len(photos):.3f}"
          f" s/photo ({networks / command:.2f}x the networks' throughput; model load excluded)")


def remover_for(networks: Networks, plain: Networks, bf16: bool, how: str) -> Remover:
    """A Remover of ``networks`` running in bf16 or fp32: ``optimized`` as `remove` holds
    them, ``folded NCHW`` optimized without channels-last, ``plain`` as trained."""
    remover = Remover(device="cpu", precision="bf16" if how == "optimized" and bf16 else "fp32",
                      networks=networks)
    if how == "plain":
        remover.nets = copy.deepcopy(plain)
    remover.bf16 = bf16
    return remover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models/joint.pt")
    parser.add_argument("--paper-scale", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", type=int, default=0,
                        help="also time a folder of this many photos")
    args = parser.parse_args()
    for module in ("torch", "maskopt.app.cli", "maskopt.removal.remover"):
        print(f"import {module:<16} {import_seconds(module):6.2f} s")
    # first, while this process is small: Linux carries a process's peak memory over
    # into the programs it starts
    peak = peak_rss_mib(one_photo_code(args.paper_scale, args.models))
    print(f"peak memory of one 256 px photo in a fresh process (imports, networks, "
          f"segment + inpaint in `--precision auto`): {peak:.0f} MiB")

    def networks():
        return paper_networks() if args.paper_scale else Networks.load(args.models, "cpu")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = networks()
        # (name, bf16 autocast, how the networks are held)
        variants = [("fp32 plain", False, "plain"), ("fp32", False, "optimized")]
        if cpu_has_fast_bf16():
            variants += [("bf16 plain", True, "plain"), ("bf16 NCHW", True, "folded NCHW"),
                         ("bf16", True, "optimized")]
        removers = {name: remover_for(networks(), plain, bf16, how)
                    for name, bf16, how in variants}
    s = plain.image_size
    print(f"networks at {s} px ({'untrained, paper scale' if args.paper_scale else args.models}),"
          f" {torch.get_num_threads()} threads")
    for size in (256, 512):
        image, mask = photo_and_mask(size)
        lb = Letterbox.fit(size, size, s)
        net_input = _tensor(lb.image(image), "cpu")
        with torch.no_grad():
            out = plain.segmenter.predict(net_input)
            semantic, masked = out.semantic_logits, len(out.detections[0])
        totals = {}
        for name, remover in removers.items():
            def segment(net_input=net_input, remover=remover):
                with torch.no_grad(), autocast(remover.device, remover.bf16):
                    remover.nets.segmenter.predict(net_input)  # every detection masked

            def fill(image=image, mask=mask, semantic=semantic, lb=lb, remover=remover):
                remover._inpaint(image, mask, semantic, lb)

            def opencv(image=image, mask=mask):
                cv2.inpaint(image, mask.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)

            seg_s, inp_s, cv_s = (seconds(f, args.repeat) for f in (segment, fill, opencv))
            totals[name] = seg_s + inp_s
            baseline = name.split()[0] + " plain"
            ratio = (f"  ({totals[baseline] / totals[name]:.2f}x the plain networks' speed)"
                     if name != baseline else "")
            print(f"{size:4d} px photo, {name:>10}: segmentation {seg_s:6.3f} s + inpainting "
                  f"{inp_s:6.3f} s = {seg_s + inp_s:6.3f} s{ratio}   | OpenCV Telea {cv_s:6.3f} s")
        print(f"  (segmentation: the segmenter found {masked} detections and masked every "
              f"one; `remove` masks only those scoring >= {PANOPTIC_SCORE})")
    if args.folder and args.paper_scale:
        remover = Remover(device="cpu", networks=paper_networks())
        folder_throughput(with_fixed_person(remover), args.folder, point=(128.0, 128.0))
    elif args.folder:
        folder_throughput(Remover(args.models, device="cpu"), args.folder, category="person")


if __name__ == "__main__":
    main()
