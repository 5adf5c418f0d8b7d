"""How much of the paste lies outside M_G: the rim of the blurred alpha (issue 44).

synthesize pastes a person with an alpha blurred by ``synthesize.blur_sigma`` px and
takes M_G = alpha > 0.5, so I differs from I_G in a rim of the person outside M_G as
well. For each σ this makes the test pairs at ``--size`` px from the pipeline's raw
data (`dvc repro download` first) and prints, over the test pairs:

- the share of the pixels where I ≠ I_G that lie outside M_G;
- how far out they reach (the largest distance from M_G, px);
- the PSNR of a perfect fill of M_G (I with M_G's pixels taken from I_G) against
  I_G, and of a perfect fill of M_G grown by 1 and 2 px: what the rim costs an
  inpainter that fills exactly M_G (from the mean squared error over all pairs;
  "exact" where no pixel differs).

    .venv/bin/python benchmarks/paste_rim.py [--size 256] [--sigmas 0 0.6 1.5]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from scipy import ndimage

from maskopt.data.pairs import PairDataset
from maskopt.data.prepare import synthesize_pairs
from maskopt.models.inference import grow_mask
from maskopt.pipeline.params import load_params


def rim(pair: dict, grows: tuple[int, ...]) -> dict[str, float]:
    image, target, mask = pair["image"], pair["target"], pair["mask"][0] > 0.5
    changed = (image != target).any(0)
    outside = changed & ~mask
    distance = ndimage.distance_transform_edt(~mask.numpy())
    row = {"outside_share": float(outside.sum() / max(changed.sum(), 1)),
           "reach_px": float(distance[outside.numpy()].max()) if outside.any() else 0.0}
    for d in grows:
        hole = grow_mask(mask[None, None].float(), d)[0] > 0.5
        filled = torch.where(hole, target, image)
        row[f"mse_fill_d{d}"] = float(((filled - target) ** 2).mean())
    return row


def measure(size: int, sigma: float, raw: str, grows: tuple[int, ...]) -> dict[str, float]:
    params = load_params("params.yaml")
    params = params.model_copy(update={"synthesize": params.synthesize.model_copy(update={
        "image_size": size, "blur_sigma": sigma, "train_pairs": 4, "validation_pairs": 4})})
    with tempfile.TemporaryDirectory() as out:
        synthesize_pairs(params, raw, out)
        pairs = PairDataset(f"{out}/test")
        rows = [rim(pairs[i], grows) for i in range(len(pairs))]
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} | {
        "pairs": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.6, 1.5])
    parser.add_argument("--raw", default="data/raw")
    args = parser.parse_args()
    grows = (0, 1, 2)
    print(f"| σ (px) at {args.size} px | pairs | share of I ≠ I_G outside M_G | reach (px) | "
          + " | ".join(f"PSNR, perfect fill of M_G + {d} px" for d in grows) + " |")
    print("|---|---|---|---|" + "---|" * len(grows))
    for sigma in args.sigmas:
        m = measure(args.size, sigma, args.raw, grows)
        print(f"| {sigma:g} | {m['pairs']} | {m['outside_share']:.1%} | {m['reach_px']:.1f} | "
              + " | ".join(_psnr(m[f"mse_fill_d{d}"]) for d in grows) + " |")


def _psnr(mse: float) -> str:
    return "exact" if mse == 0 else f"{10 * np.log10(1 / mse):.1f} dB"


if __name__ == "__main__":
    main()
