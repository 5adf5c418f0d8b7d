"""The evaluation's networks, plain against held as the evaluation stages hold them.

`evaluate_baselines`, `evaluate` and `fixed_dilation` hold the networks they score as
`maskopt remove` does in fp32 (``maskopt.models.inference.hold_for_inference``: spectral
norm folded, torchvision's RoIAlign kernel). This times one batch of the evaluation
(8 test pairs) through the pretrained segmenter's ``predict`` and through the three
pretrained inpainters, plain and held so, alternating the two within each round so
that a neighbour's load falls on both alike, and prints the median seconds and their
ratio. Needs the pipeline's models and pairs (`make pipeline`); run on an idle machine.

    .venv/bin/python benchmarks/evaluation_networks.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from maskopt.data.pairs import PairDataset, batches
from maskopt.models.build import INPAINTERS
from maskopt.models.inference import Networks, hold_for_inference, inpaint
from maskopt.pipeline.layout import PAIRS, SEGMENTER_FILE, inpainter_file
from maskopt.pipeline.params import load_params


def seconds(run, nets: Networks) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        run(nets)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    params = load_params("params.yaml")
    torch.set_num_threads(params.train.threads or torch.get_num_threads())
    plain = Networks.load_pretrained(SEGMENTER_FILE, {k: inpainter_file(k) for k in INPAINTERS},
                                     params.inpainter.canny_sigma)
    held = copy.deepcopy(plain)
    hold_for_inference(held)
    pairs = next(batches(PairDataset(PAIRS / "test", plain.canny_sigma), 8))
    images, masks = pairs["image"], pairs["mask"]
    classes = torch.softmax(plain.segmenter.semantic_logits(
        plain.segmenter.features(images)).detach(), 1)
    work = {"segmenter predict": lambda nets: nets.segmenter.predict(images),
            "three inpainters": lambda nets: inpaint(nets, images, masks, classes)}
    print(f"{params.synthesize.image_size} px, batch 8, {torch.get_num_threads()} thread(s), "
          f"median of {args.rounds}")
    for name, run in work.items():
        seconds(run, plain), seconds(run, held)  # warm-up
        times = {"plain": [], "held": []}
        for _ in range(args.rounds):
            times["plain"].append(seconds(run, plain))
            times["held"].append(seconds(run, held))
        a, b = (statistics.median(times[k]) for k in ("plain", "held"))
        print(f"{name:18s} plain {a:.3f} s   held for inference {b:.3f} s   {a / b:.2f}x")


if __name__ == "__main__":
    main()
