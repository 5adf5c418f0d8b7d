"""Mask metrics: how the selected mask relates to the object M_G.

coverage   fraction of M_G inside the mask (1.0 = no ghost left behind)
precision  fraction of the mask on the object
iou        |M ∩ M_G| / |M ∪ M_G|
added_area mask pixels outside M_G, as a fraction of the image
expansion  mean distance (px) from M_G of the added pixels: how far the mask reaches out
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from maskopt.data.pairs import batches
from maskopt.models.selection import PANOPTIC_SCORE, selected_mask


def mask_metrics(mask: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    mask, gt = np.asarray(mask, bool), np.asarray(gt, bool)
    inter = float((mask & gt).sum())
    union = float((mask | gt).sum())
    added = mask & ~gt
    if added.any():
        expansion = float(ndimage.distance_transform_edt(~gt)[added].mean())
    else:
        expansion = 0.0
    return {"coverage": inter / max(gt.sum(), 1), "precision": inter / max(mask.sum(), 1),
            "iou": inter / max(union, 1), "added_area": float(added.mean()),
            "expansion_px": expansion}


@torch.no_grad()
def selected_masks(segmenter, images: torch.Tensor, gt_masks: torch.Tensor,
                   margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each image, the segmenter's soft mask (N×1×H×W) of the segment overlapping
    M_G most, as in the paper's experiments; a boolean N-vector telling which images
    had no overlapping segment (their mask is empty: the input is returned as it is,
    no ground-truth geometry enters a scored mask); and the semantic logits of the
    same pass (N×C×H×W)."""
    segmenter.eval()
    out = segmenter.predict(images, min_score=PANOPTIC_SCORE)  # the only candidates
    masks, missed = [], []
    for b, det in enumerate(out.detections):
        one = {k: v[b:b + 1] for k, v in out.features.items()}
        soft, _ = selected_mask(segmenter, one, det, gt_masks[b, 0] > 0.5, margin,
                                box_fallback=False)
        missed.append(soft is None)
        masks.append(torch.zeros_like(gt_masks[b, 0]) if soft is None else soft)
    return (torch.stack(masks)[:, None], torch.tensor(missed, device=images.device),
            out.semantic_logits)


def mask_quality(segmenter, pairs, margin: float, batch_size: int = 16) -> dict[str, float]:
    """Mean coverage and precision of the selected masks over ``pairs``, and the share
    of pairs with no overlapping segment: how far a segmenter has learned the person.
    Leaves the segmenter in eval mode."""
    rows, missed = [], []
    for batch in batches(pairs, batch_size):
        masks, miss, _ = selected_masks(segmenter, batch["image"], batch["mask"], margin)
        rows += [mask_metrics(m[0].numpy() > 0.5, g[0].numpy() > 0.5)
                 for m, g in zip(masks, batch["mask"], strict=True)]
        missed += miss.tolist()
    means = mean_metrics(rows)
    return {"coverage": means["coverage"], "precision": means["precision"],
            "no_segment": float(np.mean(missed))}


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
