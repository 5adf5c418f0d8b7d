"""The segmentation inpainter's input domain: pretrained on one-hot ground-truth labels
of I, it gets the segmenter's softmax in joint training, evaluation and `remove`.

On the test pairs, with the same hole (M_G), prints the share of hole pixels whose
inpainted class is right (against I_G's labels; unlabeled pixels left out) for both
inputs, per pair paired: mean difference, wins and a bootstrap 95 % interval. Needs
the pipeline's models (`dvc repro`).

    .venv/bin/python benchmarks/segmentation_input_gap.py
"""

from __future__ import annotations

import numpy as np
import torch

from maskopt.core.imaging import one_hot
from maskopt.data.pairs import PairDataset, batches
from maskopt.evaluation.statistics import paired_comparison
from maskopt.models.build import INPAINTERS
from maskopt.models.inference import Networks
from maskopt.models.inpainter import class_probabilities
from maskopt.pipeline.layout import JOINT_FILE, PAIRS, SEGMENTER_FILE, inpainter_file


def hole_accuracy(probs: torch.Tensor, target: torch.Tensor, hole: torch.Tensor) -> list[float]:
    """Per image: the share of labeled hole pixels whose argmax class is ``target``'s."""
    right = probs.argmax(1) == target
    counted = hole[:, 0].bool() & (target > 0)
    return [float(r[c].float().mean()) for r, c in zip(right, counted, strict=True)
            if c.any()]


@torch.no_grad()
def main() -> None:
    canny_sigma = Networks.load(JOINT_FILE).canny_sigma
    nets = Networks.load_pretrained(SEGMENTER_FILE, {k: inpainter_file(k) for k in INPAINTERS},
                                    canny_sigma, torch.device("cpu"), "pretrain_inpainter")
    test = PairDataset(PAIRS / "test", canny_sigma)
    classes = test.taxonomy.num_classes
    scores: dict[str, list[float]] = {"one-hot labels of I (pretraining)": [],
                                      "pretrained segmenter's softmax": []}
    agreement = []
    for batch in batches(test, 16):
        hole = batch["mask"]
        soft = torch.softmax(nets.segmenter.predict(batch["image"]).semantic_logits.float(), 1)
        for name, given in zip(scores, (one_hot(batch["semantic"], classes), soft),
                               strict=True):
            out = class_probabilities(nets.segmentation(given, hole))
            scores[name] += hole_accuracy(out, batch["target_semantic"], hole)
        # how far the two inputs are apart outside the hole, where both see I
        known = (hole[:, 0] < 0.5) & (batch["semantic"] > 0)
        agreement += [float((soft.argmax(1)[b] == batch["semantic"][b])[known[b]].float().mean())
                      for b in range(len(hole))]
    print(f"the segmenter's class = I's label outside the hole: {np.mean(agreement):.3f}")
    for name, values in scores.items():
        print(f"{name}: {np.mean(values):.3f} over {len(values)} test pairs")
    a, b = list(scores.values())[:2]
    c = paired_comparison(a, b)
    print(f"one-hot − softmax input, hole accuracy: {c['mean_difference']:+.3f} "
          f"[{c['low']:+.3f}, {c['high']:+.3f}], wins {c['wins']}/{c['images']}")


if __name__ == "__main__":
    main()
