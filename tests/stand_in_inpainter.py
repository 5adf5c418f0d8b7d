"""A stand-in for an external inpainter (tests only): fills each hole with the mean
colour of the known pixels, in IOPaint's layout (--image DIR --mask DIR --output DIR)
or, with --lama, LaMa's (one folder of NAME.png + NAME_mask.png; writes NAME_mask.png).
--skip NAME leaves that image out; --fail exits with an error; --log FILE appends a
line to FILE per run (how often a command was started)."""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("--image")
parser.add_argument("--mask")
parser.add_argument("--lama")
parser.add_argument("--output", required=True)
parser.add_argument("--skip", default=None)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--log", default=None)
args = parser.parse_args()
if args.log:
    with open(args.log, "a") as log:
        log.write("run\n")
if args.fail:
    sys.exit("stand-in: failing as asked")
out = Path(args.output)
out.mkdir(parents=True, exist_ok=True)
if args.lama:
    pairs = [(p, p.with_name(f"{p.stem}_mask.png"), f"{p.stem}_mask.png")
             for p in sorted(Path(args.lama).glob("*.png")) if not p.stem.endswith("_mask")]
else:
    pairs = [(p, Path(args.mask) / p.name, p.name) for p in sorted(Path(args.image).glob("*.png"))]
for image_path, mask_path, written in pairs:
    if image_path.stem == args.skip:
        continue
    rgb = np.asarray(Image.open(image_path).convert("RGB")).copy()
    hole = np.asarray(Image.open(mask_path)) > 127
    rgb[hole] = rgb[~hole].mean(axis=0).astype(np.uint8) if (~hole).any() else 128
    rgb[~hole] = 255 - rgb[~hole]  # tools may touch the known pixels: the score must not
    Image.fromarray(rgb).save(out / written)
