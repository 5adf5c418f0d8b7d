"""Pairs per second of `synthesize` at 256 px, beside the I/O floor on the same images.

The I/O floor decodes the same background/source images and segment maps and
encodes the same six PNGs per pair, without any of the synthesis work. Run on an
idle machine: with 2 cores, any other job makes the figures swing.

    .venv/bin/python benchmarks/synthesize.py [--pairs 200] [--workers 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskopt.data.panoptic import PanopticDataset
from maskopt.data.sample_scenes import write_sample_dataset
from maskopt.data.synthesize import PAIR_FOLDERS, SynthesisConfig, synthesize_split
from maskopt.io import read_json


def io_floor(dataset: PanopticDataset, annotations: list[dict], pairs: Path, out: Path) -> float:
    """Seconds to decode each pair's two source images and encode its six PNGs.

    The six arrays are the pair's real outputs, read into memory before the clock
    starts, so the encoder compresses the same content as the stage did.
    """
    by_id = {r.image_id: i for i, r in enumerate(dataset.records)}
    outputs = [[np.asarray(Image.open(pairs / folder / ann["file_name"]))
                for folder in PAIR_FOLDERS] for ann in annotations]
    start = time.perf_counter()
    for ann, arrays in zip(annotations, outputs, strict=True):
        dataset.load(by_id[ann["background_image_id"]])
        dataset.load(by_id[ann["source_image_id"]])
        for k, array in enumerate(arrays):
            Image.fromarray(array).save(out / f"{k}.png", compress_level=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    config = SynthesisConfig(image_size=args.size, min_person_area=0.005, max_truncation=0.15,
                             blur_sigma=1.5, min_mask_ratio=0.02, max_mask_ratio=0.4)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # COCO-like source images: 640x480 scenes
        write_sample_dataset(tmp / "raw", 0, {"train": args.pairs}, 640, 480)
        dataset = PanopticDataset.from_root(tmp / "raw", "train")
        start = time.perf_counter()
        stats = synthesize_split(dataset, tmp / "pairs", split="train", n_pairs=None,
                                 config=config, seed=0, workers=args.workers)
        synth = time.perf_counter() - start
        annotations = read_json(tmp / "pairs" / "annotations.json")["annotations"]
        (tmp / "floor").mkdir()
        floor = io_floor(dataset, annotations, tmp / "pairs", tmp / "floor")
    n = stats["pairs"]
    print(f"pairs: {n} at {args.size} px from 640x480 sources, workers={args.workers}")
    print(f"synthesize: {synth:.2f} s  -> {n / synth:.1f} pairs/s")
    print(f"I/O floor (decode 2 images + 2 maps, encode 6 PNGs): {floor:.2f} s "
          f"-> {n / floor:.1f} pairs/s")
    print(f"ratio synthesize / I/O floor: {synth / floor:.2f}x")


if __name__ == "__main__":
    main()
