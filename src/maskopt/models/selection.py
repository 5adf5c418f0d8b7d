"""The paper's core step: choose the segment to remove and compute its mask.

In joint training and evaluation the segment is the detected instance that overlaps
M_G most (Sec. III-C); in ``maskopt remove`` the user picks it (a point, a box, a
rough mask). Its mask is the mask head's output on its box grown by
:func:`box_margin`, so the mask can reach past the object; the inpainters get it
binary, the segmenter its gradient (:func:`straight_through`).
"""

from __future__ import annotations

import math

import torch

from maskopt.errors import MaskoptError
from maskopt.models.segmenter import Detections, enlarge_boxes, paste_soft_masks

# Detections a user may pick in `maskopt remove` (and the MLflow model) score at least this.
MIN_SCORE = 0.3


def box_margin(alpha: float, image_size: int, extra_px: int = 2) -> int:
    """Pixels by which the selected segment's box is grown before its mask is computed.

    The mask head only paints inside the box it is given, and detection boxes carry
    no gradient, so on the detected box alone the mask expansion loss could never
    reach the band α·S outside the object (a soft edge, a shadow, a hand's tip).
    Growing the box by α·S plus a few pixels lets the mask extend past the object;
    the same margin is used in joint training, evaluation and ``maskopt remove``.
    """
    return math.ceil(alpha * image_size) + extra_px


def select_segment(detections: Detections, gt_mask: torch.Tensor) -> int | None:
    """Index of the detected instance whose mask overlaps ``gt_mask`` most, or None.

    Overlap is the intersection *area* of the thresholded (0.5) mask with ``gt_mask``,
    as the paper says ("the segment whose overlap with m_G is the largest"), not IoU:
    a mask that spills over the object is not penalised for it here. Only instances
    (thing classes) are candidates — stuff regions of the semantic branch have no
    instance mask, and the object to remove is always a thing (a person).
    """
    if not len(detections):
        return None
    hard = detections.soft_masks() > 0.5
    inter = (hard & gt_mask.bool()).flatten(1).sum(1).float()
    best = int(torch.argmax(inter + 1e-6 * detections.scores))  # ties: higher score
    return best if inter[best] > 0 else None


def segment_mask(segmenter, features, box: torch.Tensor, label: torch.Tensor,
                 image_size: tuple[int, int], margin: float) -> torch.Tensor:
    """Soft mask (H×W, with gradient) of one instance: the mask head run on its box
    grown by ``margin`` px (see :func:`box_margin`). ``features`` are those of this
    one image (a batch of one); ``box`` is 4 xyxy values, ``label`` its thing label."""
    grown = enlarge_boxes(box.detach().float().reshape(1, 4), margin, *image_size)
    probs = segmenter.mask_probs(features, [grown], [label.reshape(1)], [image_size])[0]
    return paste_soft_masks(probs, grown, *image_size)[0]


def selected_mask(segmenter, features, detections: Detections, gt_mask: torch.Tensor,
                  margin: float, box_fallback: bool) -> tuple[torch.Tensor | None, int]:
    """The soft mask of the segment overlapping ``gt_mask`` most (see the two functions
    above); returns (mask, index).

    When no instance overlaps: with ``box_fallback`` (joint *training* only) the mask
    head runs on ``gt_mask``'s box with the person label, so the step still teaches
    the segmenter something; without it (evaluation) the result is (None, -1) and the
    caller scores an empty mask — ground-truth geometry must never enter a scored mask.
    """
    index = select_segment(detections, gt_mask)
    if index is not None:
        return segment_mask(segmenter, features, detections.boxes[index],
                            detections.labels[index], detections.image_size, margin), index
    if not box_fallback:
        return None, -1
    ys, xs = torch.nonzero(gt_mask.bool(), as_tuple=True)
    if len(xs) == 0:
        raise MaskoptError("the ground-truth mask is empty")
    box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    label = torch.ones(1, dtype=torch.long, device=box.device)  # first thing class (person)
    return segment_mask(segmenter, features, box, label, detections.image_size, margin), -1


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, soft_mask: torch.Tensor) -> torch.Tensor:
        return (soft_mask > 0.5).to(soft_mask.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def straight_through(soft_mask: torch.Tensor) -> torch.Tensor:
    """Exactly binary mask forward (what the inpainters see at inference: soft > 0.5),
    the gradient passed to the soft mask unchanged backward (straight-through)."""
    return _StraightThrough.apply(soft_mask)


def select_segment_at_point(detections: Detections, x: float, y: float,
                            threshold: float = 0.5) -> int | None:
    """Index of the highest-scoring instance whose mask covers pixel (x, y), or None."""
    if not len(detections):
        return None
    h, w = detections.image_size
    row, col = min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)
    covers = detections.soft_masks()[:, row, col] > threshold
    if not covers.any():
        return None
    scores = torch.where(covers, detections.scores, torch.full_like(detections.scores, -1))
    return int(torch.argmax(scores))
