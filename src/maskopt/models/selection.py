"""The paper's core step: choose the segment to remove and compute its mask.

The candidates are the instance segments of the panoptic output S, built as
PanopticFPN's inference builds them (:func:`panoptic_segments`). In joint training
and evaluation the segment is the one that overlaps M_G most (Sec. III-C); in
``maskopt remove`` the user picks it (a point, a box, a rough mask). Its mask is the
mask head's output on its box grown by :func:`box_margin`, so the mask can reach past
the object; the inpainters get it binary, the segmenter its gradient
(:func:`straight_through`).
"""

from __future__ import annotations

import math

import torch

from maskopt.core.errors import MaskoptError
from maskopt.models.detections import Detections, enlarge_boxes, paste_soft_masks

# detectron2's PanopticFPN combine step (MODEL.PANOPTIC_FPN.COMBINE): instances scoring
# below this are not segments of S; one whose mask is more than this share already taken
# by higher-scoring segments is dropped, otherwise it keeps its untaken pixels.
PANOPTIC_SCORE = 0.5
PANOPTIC_OVERLAP = 0.5


def box_margin(alpha: float, image_size: int, extra_px: int = 2) -> int:
    """Pixels by which the selected segment's box is grown before its mask is computed.

    The mask head only paints inside the box it is given, and detection boxes carry
    no gradient, so on the detected box alone the mask expansion loss could never
    reach the band α·S outside the object (a soft edge, a shadow, a hand's tip).
    Growing the box by α·S plus a few pixels lets the mask extend past the object;
    the same margin is used in joint training, evaluation and ``maskopt remove``.
    """
    return math.ceil(alpha * image_size) + extra_px


def panoptic_segments(detections: Detections, score_threshold: float = PANOPTIC_SCORE,
                      overlap_threshold: float = PANOPTIC_OVERLAP
                      ) -> tuple[list[int], torch.Tensor]:
    """The instance segments of the panoptic output: (indices into ``detections``, in
    descending score, and their K×H×W boolean pixels), by detectron2's rule.

    Highest score first, each instance scoring ``score_threshold`` or more takes the
    pixels of its thresholded (0.5) mask that no earlier segment holds; it is dropped
    when more than ``overlap_threshold`` of its mask is already held. Stuff, which
    detectron2 adds afterwards, only takes pixels no instance holds, so it changes none
    of these segments; it is not a candidate here (the object to remove is a thing).
    """
    height, width = detections.image_size
    taken = torch.zeros(height, width, dtype=torch.bool, device=detections.boxes.device)
    if not len(detections):
        return [], taken[None][:0]
    hard = detections.soft_masks() > 0.5
    kept, pixels = [], []
    for i in torch.argsort(detections.scores, descending=True).tolist():
        if float(detections.scores[i]) < score_threshold:
            break
        area = int(hard[i].sum())
        if area == 0:
            continue
        overlap = int((hard[i] & taken).sum())
        if overlap / area > overlap_threshold:
            continue
        own = hard[i] & ~taken
        taken |= own
        kept.append(i)
        pixels.append(own)
    return kept, (torch.stack(pixels) if pixels else taken[None][:0])


def select_segment(detections: Detections, gt_mask: torch.Tensor,
                   score_threshold: float = PANOPTIC_SCORE) -> int | None:
    """Index (into ``detections``) of the panoptic segment overlapping ``gt_mask`` most,
    or None when none does.

    Overlap is the intersection *area* of the segment's pixels with ``gt_mask``, as the
    paper says ("the segment whose overlap with m_G is the largest"), not IoU: a segment
    that spills over the object is not penalised for it here.
    """
    kept, pixels = panoptic_segments(detections, score_threshold)
    if not kept:
        return None
    inter = (pixels & gt_mask.bool()).flatten(1).sum(1)
    best = int(torch.argmax(inter))  # ties: the first, i.e. the higher score
    return kept[best] if inter[best] > 0 else None


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
                            score_threshold: float = PANOPTIC_SCORE) -> int | None:
    """Index (into ``detections``) of the panoptic segment holding pixel (x, y), or None."""
    kept, pixels = panoptic_segments(detections, score_threshold)
    h, w = detections.image_size
    row, col = min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)
    holding = [i for i, own in zip(kept, pixels, strict=True) if own[row, col]]
    return holding[0] if holding else None
