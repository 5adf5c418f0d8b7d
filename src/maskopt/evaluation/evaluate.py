"""The evaluate stage: every row of the comparison on the synthesized test pairs.

Rows (all inpainted by the joint model's three inpainters, so rows differ only in the
mask, except the OpenCV rows, which differ only in the inpainter):

    joint                 the joint segmenter's mask, selected with M_G (paper's setting)
    pretrained_segmenter  the segmenter before joint training, selected the same way
    gt_d{d}               M_G eroded (d < 0) or dilated (d > 0) by d px (paper Table I)
    opencv_telea/_ns      OpenCV inpainting on the joint mask
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from maskopt.evaluation.image_metrics import ALL, BucketMetrics, SharedNetworks
from maskopt.evaluation.masks import mask_metrics, mean_metrics, selected_masks
from maskopt.inference import Networks, grow_mask, inpaint, opencv_inpaint
from maskopt.training.data import PairDataset, batches
from maskopt.training.loop import to_device

BATCH = 8


@dataclass
class RowResults:
    images: BucketMetrics
    masks: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict:
        out = self.images.result()
        for bucket, rows in self.masks.items():
            out.setdefault(bucket, {}).update({f"mask_{k}": v
                                               for k, v in mean_metrics(rows).items()})
        return out


def row_names(dilations: list[int]) -> list[str]:
    return ["joint", "pretrained_segmenter", *(f"gt_d{d}" for d in dilations),
            "opencv_telea", "opencv_ns"]


def evaluate_pairs(nets: Networks, pretrained_segmenter, dataset: PairDataset,
                   dilations: list[int], shared: SharedNetworks, grid_pairs: int = 8,
                   progress=None) -> tuple[dict, dict]:
    """Return ({row: {bucket: metrics}}, grid images) over the whole test split."""
    device = nets.device
    results = {name: RowResults(BucketMetrics(shared)) for name in row_names(dilations)}
    grid: dict[str, list[torch.Tensor]] = defaultdict(list)
    for batch in batches(dataset, BATCH):
        batch = to_device(batch, device)
        images, target, gt = batch["image"], batch["target"], batch["mask"]
        soft, semantic = selected_masks(nets.segmenter, images, gt)
        semantic_probs = torch.softmax(semantic, 1)
        joint_mask = (soft > 0.5).float()
        pre_soft, _ = selected_masks(pretrained_segmenter, images, gt)
        masks = {"joint": joint_mask, "pretrained_segmenter": (pre_soft > 0.5).float(),
                 **{f"gt_d{d}": grow_mask(gt, d) for d in dilations}}
        outputs = {name: inpaint(nets, images, m, semantic_probs) for name, m in masks.items()}
        for method in ("telea", "ns"):
            outputs[f"opencv_{method}"] = opencv_inpaint(images, joint_mask, method)
            masks[f"opencv_{method}"] = joint_mask
        for name, result in outputs.items():
            results[name].images.update(result, target, batch["bucket"])
            for m, g, bucket in zip(masks[name], gt, batch["bucket"], strict=True):
                row = mask_metrics(m[0].cpu().numpy() > 0.5, g[0].cpu().numpy() > 0.5)
                results[name].masks[bucket].append(row)
                results[name].masks[ALL].append(row)
        if len(grid["input"]) < grid_pairs:
            take = slice(0, grid_pairs - len(grid["input"]))
            for key, value in (("input", images), ("selected mask", masks["pretrained_segmenter"]),
                               ("expanded mask", joint_mask), ("ours", outputs["joint"]),
                               ("OpenCV Telea", outputs["opencv_telea"]),
                               ("ground truth", target)):
                grid[key].extend(value[take].cpu())
        if progress is not None:
            progress.update(len(images))
    return {name: r.summary() for name, r in results.items()}, dict(grid)


def flat_metrics(table: dict, unavailable: dict[str, str]) -> dict:
    """Nested {row: {metric: {bucket: value}}} for reports/metrics.json; DVC shows it as
    flat keys like ``joint.psnr.0-10``, which read well in `dvc metrics diff`."""
    out: dict = {}
    for row, buckets in table.items():
        for bucket, metrics in buckets.items():
            for metric, value in metrics.items():
                if metric == "count" and row != "joint":
                    continue
                if isinstance(value, float) and not np.isfinite(value):
                    continue
                out.setdefault(row, {}).setdefault(metric, {})[bucket] = round(float(value), 5)
    if unavailable:
        out["unavailable"] = dict(unavailable)
    return out
