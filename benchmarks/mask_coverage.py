"""Where the pretrained segmenter's selected mask loses the person: its box or its mask.

For each test pair, the segment overlapping M_G most is chosen as `evaluate` chooses
it (the pretrained segmenter's mask on its detected box, no margin), and this prints
the mean share of M_G covered by:

- the selected mask, as scored (mask head probability > 0.5);
- the same probabilities at lower thresholds (0.3, 0.2): how much of the person the
  mask head sees but is unsure of;
- every panoptic segment that overlaps M_G, together (a person split in parts);
- the selected detection's box: the most any mask on that box could cover;
- the mask head run on M_G's own box (an oracle box), at 0.5 and 0.3.

A diagnosis, not a score: the thresholds other than 0.5 and the oracle box are never
used by the method. Needs the pipeline's models and pairs (`dvc repro`).

    .venv/bin/python benchmarks/mask_coverage.py [--model models/segmenter.pt] [--margin 0]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from maskopt.data.pairs import PairDataset
from maskopt.evaluation.masks import mask_metrics
from maskopt.models.build import load_model, restore
from maskopt.models.detections import enlarge_boxes
from maskopt.models.selection import PANOPTIC_SCORE, panoptic_segments, segment_mask, select_segment


def coverage(mask: torch.Tensor | np.ndarray, gt: np.ndarray) -> float:
    return mask_metrics(np.asarray(mask), gt)["coverage"]


def box_mask(box: torch.Tensor, height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = box.tolist()
    inside = np.zeros((height, width), bool)
    inside[max(int(y0), 0):int(np.ceil(y1)), max(int(x0), 0):int(np.ceil(x1))] = True
    return inside


@torch.no_grad()
def diagnose(segmenter, pairs, margin: float) -> tuple[dict[str, float], int]:
    rows: dict[str, list[float]] = {k: [] for k in (
        "selected mask (> 0.5, as scored)", "its probabilities > 0.3", "its probabilities > 0.2",
        "all segments overlapping M_G", "the selected box",
        "mask head on M_G's box, > 0.5", "mask head on M_G's box, > 0.3")}
    missed = 0
    for i in range(len(pairs)):
        pair = pairs[i]
        gt = pair["mask"][0] > 0.5
        g = gt.numpy()
        out = segmenter.predict(pair["image"][None], min_score=PANOPTIC_SCORE)
        det, features = out.detections[0], {k: v[:1] for k, v in out.features.items()}
        index = select_segment(det, gt)
        if index is None:  # scored as an empty mask, as evaluate does
            missed += 1
            for values in rows.values():
                values.append(0.0)
            continue
        label, size = det.labels[index], det.image_size
        soft = segment_mask(segmenter, features, det.boxes[index], label, size, margin)
        _, pixels = panoptic_segments(det)
        union = pixels[(pixels & gt).flatten(1).any(1)].any(0)
        ys, xs = np.nonzero(g)
        gt_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        oracle = segment_mask(segmenter, features, gt_box, label, size, margin)
        box = enlarge_boxes(det.boxes[index].reshape(1, 4), margin, *size)[0]
        for name, mask in zip(rows, (soft > 0.5, soft > 0.3, soft > 0.2, union,
                                     box_mask(box, *size), oracle > 0.5, oracle > 0.3),
                              strict=True):
            rows[name].append(coverage(mask, g))
    return {k: float(np.mean(v)) for k, v in rows.items()}, missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/segmenter.pt")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="px the box is grown by (0: the pretrained segmenter's, as scored)")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = load_model(args.model, "pretrain_segmentation")["networks"]["segmenter"]
        segmenter = restore(saved).eval()
    pairs = PairDataset("data/pairs/test", 1.0)
    means, missed = diagnose(segmenter, pairs, args.margin)
    print(f"{args.model}, {len(pairs)} test pairs, box margin {args.margin} px, "
          f"{missed} with no overlapping segment (counted as 0)")
    print("| share of M_G covered by | mean |\n|---|---|")
    for name, value in means.items():
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
