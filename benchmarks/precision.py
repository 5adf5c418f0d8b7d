"""What bf16 costs `maskopt remove`: the joint model on the sample's test pairs, in fp32
and under bf16 autocast, the same way the evaluate stage scores the `joint` row (its
learned mask, its three inpainters), and the time of each.

Prints the mean PSNR of each precision against I_G, their paired difference (mean,
largest per-image gap), and seconds per pair. Run after `dvc repro` (needs
models/joint.pt and data/pairs), on an idle machine for the times.

    .venv/bin/python benchmarks/precision.py [--models models/joint.pt] [--batch 10]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from maskopt.core.device import autocast, cpu_has_fast_bf16
from maskopt.data.pairs import PairDataset, batches
from maskopt.evaluation.image_metrics import psnr
from maskopt.evaluation.masks import selected_masks
from maskopt.models.inference import Networks, inpaint


def remove_all(nets: Networks, dataset: PairDataset, batch: int, bf16: bool):
    """The joint row's outputs for every test pair, and the seconds it took."""
    outputs, targets, started = [], [], time.perf_counter()
    cpu = torch.device("cpu")
    for items in batches(dataset, batch):
        with torch.no_grad(), autocast(cpu, bf16):
            soft, _, semantic = selected_masks(nets.segmenter, items["image"], items["mask"],
                                               nets.box_margin)
            mask = (soft > 0.5).float()
            out = inpaint(nets, items["image"], mask, torch.softmax(semantic.float(), 1))
        outputs.append(out.float().clamp(0, 1))
        targets.append(items["target"])
    return torch.cat(outputs), torch.cat(targets), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models/joint.pt")
    parser.add_argument("--pairs", default="data/pairs/test")
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    if not cpu_has_fast_bf16():
        print("this CPU has no fast bf16 (AVX-512 BF16 or AMX): `auto` stays in fp32 here")
    warnings.simplefilter("ignore")
    nets = Networks.load(args.models)
    dataset = PairDataset(args.pairs, nets.canny_sigma)
    scores, seconds = {}, {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        out, target, seconds[name] = remove_all(nets, dataset, args.batch, bf16)
        scores[name] = psnr(out, target)
    gap = scores["bf16"] - scores["fp32"]
    n = len(dataset)
    for name in scores:
        print(f"{name}: PSNR {scores[name].mean():.3f} dB over {n} pairs, "
              f"{seconds[name] / n * 1000:.1f} ms per pair")
    print(f"bf16 - fp32: mean {gap.mean():+.3f} dB, largest per-image gap "
          f"{gap.abs().max():.3f} dB, time ratio {seconds['bf16'] / seconds['fp32']:.2f}")


if __name__ == "__main__":
    main()
