"""Mask R-CNN's mask loss on ground-truth boxes grown by a random margin, for both
segmenter backends.

Joint training and removal run the mask head on the selected box grown by α·S + 2 px,
so that the mask can reach beyond it. Mask R-CNN alone only sees proposals with
IoU ≥ 0.5, and on small objects a grown box falls outside that: without this term the
head paints less, not more, on the grown box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from maskopt.models.detections import enlarge_boxes


def grown_boxes(boxes: list[torch.Tensor], image_sizes, max_margin: float) -> list[torch.Tensor]:
    """Each image's ground-truth boxes (xyxy), each grown by its own random margin in
    [0, ``max_margin``] px and clipped to its image."""
    grown = []
    for image_boxes, image_size in zip(boxes, image_sizes, strict=True):
        margin = torch.rand(len(image_boxes), 1, device=image_boxes.device)
        grown.append(enlarge_boxes(image_boxes, margin * max_margin, *image_size))
    return grown


def mask_loss_in_boxes(logits: torch.Tensor, masks: list[torch.Tensor],
                       boxes: list[torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of the mask head's logits (n×2r×2r, one per box, of its
    instance's class) against each instance's mask (``masks``: per image n×H×W)
    resampled into its box, as Mask R-CNN makes its targets."""
    gt = torch.cat([m.float() for m in masks])[:, None]  # one "image" per instance
    flat = torch.cat(boxes)
    rois = torch.cat([torch.arange(len(flat), device=flat.device, dtype=flat.dtype)[:, None],
                      flat], 1)
    target = roi_align(gt, rois, tuple(logits.shape[-2:]), 1.0, aligned=False)[:, 0]
    return F.binary_cross_entropy_with_logits(logits, (target > 0.5).float())
