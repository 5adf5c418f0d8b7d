"""What a segmenter outputs, and the box and mask geometry its users share.

Kept apart from :mod:`maskopt.models.segmenter`, which builds the network from
torchvision: segment selection and the training tasks use these, and a stage that
trains an inpainter alone then starts without torchvision, nearly all of whose
import time is the ``torch._dynamo`` that its ops import.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Detections:
    """Instances found in one image. ``mask_probs`` are the mask head's N×1×2r×2r
    probabilities (r: the segmenter's mask_resolution) inside ``boxes`` (xyxy, input
    pixels), without gradient."""

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    mask_probs: torch.Tensor
    image_size: tuple[int, int]
    full_masks: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.boxes)

    def soft_masks(self) -> torch.Tensor:
        """N×H×W soft masks pasted into the image (cached)."""
        if self.full_masks is None:
            self.full_masks = paste_soft_masks(self.mask_probs, self.boxes, *self.image_size)
        return self.full_masks


def paste_soft_masks(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int,
                     width: int) -> torch.Tensor:
    """Paste N×1×h×w mask probabilities into N×H×W images with ``grid_sample``.

    Differentiable in the probabilities (and the boxes), unlike torchvision's
    integer paste; pixels outside a box get 0. Always computed in float32: under
    bfloat16 autocast the pixel-centre coordinates would snap to 2-px steps.
    """
    if len(boxes) == 0:
        return mask_probs.new_zeros((0, height, width), dtype=torch.float32)
    with torch.autocast(mask_probs.device.type, enabled=False):
        probs, boxes = mask_probs.float(), boxes.float()
        x0, y0, x1, y1 = boxes.unbind(1)
        xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
        ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
        # pixel centre → normalised coordinate inside the box (-1 .. 1 spans the box)
        gx = 2 * (xs[None] - x0[:, None]) / (x1 - x0).clamp_min(1e-3)[:, None] - 1
        gy = 2 * (ys[None] - y0[:, None]) / (y1 - y0).clamp_min(1e-3)[:, None] - 1
        grid = torch.stack([gx[:, None, :].expand(-1, height, -1),
                            gy[:, :, None].expand(-1, -1, width)], dim=-1)
        pasted = F.grid_sample(probs, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
    return pasted[:, 0]


def enlarge_boxes(boxes: torch.Tensor, margin: float | torch.Tensor, height: int,
                  width: int) -> torch.Tensor:
    """xyxy boxes grown by ``margin`` px on every side (a number, or n×1 per box),
    clipped to the image."""
    grown = boxes + margin * boxes.new_tensor([-1, -1, 1, 1])
    limit = boxes.new_tensor([width, height, width, height])
    return torch.minimum(grown.clamp_min(0), limit)


@dataclass
class SegmenterOutput:
    detections: list[Detections]
    semantic_logits: torch.Tensor
    features: OrderedDict | None = field(default=None, repr=False)
