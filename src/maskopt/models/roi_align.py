"""RoIAlign as two small matrix products, for training on CPUs.

torchvision's CPU RoIAlign scatters every sample's gradient one by one on one thread:
in the sample profile it took 30 % of a segmenter step and 31 % of a joint step
(`benchmarks/profile_stages.py`). With a fixed sampling ratio RoIAlign is separable:
each output bin averages bilinear samples on a regular grid, and bilinear weights
factor into a row weight times a column weight. So one RoI's output is
``A_y · F · A_xᵀ`` with ``A_y`` (out × H) and ``A_x`` (out × W) holding the averaged
interpolation weights of its rows and columns, and the gradient comes from the same
two matrix products — batched BLAS on every core. It computes what
``torchvision.ops.roi_align(..., aligned=False)`` computes (same sample points, same
border rule: samples beyond one pixel outside the map count as zero, the rest clamp to
its edge), to float rounding; `tests/test_models.py` checks values and gradients.

The dense products cost O(out · H · W · C) per RoI instead of O(out² · C): this pays
where the gradient is computed, not for a forward pass alone, so `maskopt remove`
pools with torchvision's kernel (:mod:`maskopt.models.fast_inference`). On CUDA
torchvision's kernel is always used.
"""

from __future__ import annotations

import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import _convert_to_roi_format, _setup_scales


def _axis_weights(start: torch.Tensor, length: torch.Tensor, size: int, out: int,
                  sampling_ratio: int) -> torch.Tensor:
    """(k, out, size): each bin's bilinear weights along one axis, averaged over its
    ``sampling_ratio`` samples (RoIAlign's sample points with aligned=False)."""
    steps = torch.arange(out * sampling_ratio, dtype=start.dtype, device=start.device)
    points = start[:, None] + length[:, None] * (steps + 0.5) / (out * sampling_ratio)
    inside = (points >= -1) & (points <= size)
    points = points.clamp(0, size - 1)
    low = points.floor()
    high = (low + 1).clamp(max=size - 1)
    frac = points - low
    cells = torch.arange(size, dtype=start.dtype, device=start.device)
    weights = ((1 - frac)[..., None] * (cells == low[..., None])
               + frac[..., None] * (cells == high[..., None]))
    weights = weights * inside[..., None]
    return weights.view(len(start), out, sampling_ratio, size).mean(2)


def _bin_weights(rois: torch.Tensor, spatial_scale: float, height: int, width: int,
                 output_size: tuple[int, int], sampling_ratio: int) -> tuple[torch.Tensor, ...]:
    """Each RoI's (row weights k×out_h×height, column weights k×out_w×width); ``rois``
    float, k×5 (image index, x1, y1, x2, y2) in image pixels."""
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale for i in range(1, 5))
    out_h, out_w = output_size
    return (_axis_weights(y1, (y2 - y1).clamp_min(1.0), height, out_h, sampling_ratio),
            _axis_weights(x1, (x2 - x1).clamp_min(1.0), width, out_w, sampling_ratio))


def separable_roi_align(features: torch.Tensor, rois: torch.Tensor,
                        output_size: tuple[int, int], spatial_scale: float,
                        sampling_ratio: int) -> torch.Tensor:
    """``torchvision.ops.roi_align(features, rois, output_size, spatial_scale,
    sampling_ratio, aligned=False)`` for a fixed ``sampling_ratio`` > 0; ``rois`` is
    k×5 (image index, x1, y1, x2, y2). Computed in float32, returned in the features'
    dtype (as torchvision does under autocast)."""
    if sampling_ratio <= 0:
        raise ValueError("separable_roi_align needs a fixed sampling ratio > 0")
    dtype = features.dtype
    with torch.autocast(features.device.type, enabled=False):
        features, rois = features.float(), rois.float()
        _, channels, height, width = features.shape
        out_h, out_w = output_size
        rows, cols = _bin_weights(rois, spatial_scale, height, width, output_size,
                                  sampling_ratio)
        image_of = rois[:, 0].long()
        picks, pooled = [], []
        for image in image_of.unique().tolist():
            picked = torch.where(image_of == image)[0]
            # every RoI's row weights applied to this image at once: (k·out_h, C·W),
            # laid out so that neither product needs a transposed copy
            image_rows = features[image].transpose(0, 1).reshape(height, channels * width)
            by_rows = torch.matmul(rows[picked].reshape(-1, height), image_rows)
            by_rows = by_rows.view(len(picked), out_h, channels, width)
            by_both = torch.matmul(by_rows, cols[picked].transpose(1, 2)[:, None])
            pooled.append(by_both.permute(0, 2, 1, 3))  # k, C, out_h, out_w
            picks.append(picked)
        result = _in_roi_order(pooled, picks, features.new_zeros(0, channels, out_h, out_w))
    return result.contiguous().to(dtype)


def _in_roi_order(parts: list[torch.Tensor], picks: list[torch.Tensor],
                  empty: torch.Tensor) -> torch.Tensor:
    """Per-image results (``parts``, for the RoI indices ``picks``) as one tensor in RoI
    order, ``empty`` when there are no RoIs. RoIs come grouped by image (torchvision's
    format), and then nothing needs scattering."""
    if not parts:
        return empty
    result = parts[0] if len(parts) == 1 else torch.cat(parts)
    order = torch.cat(picks)
    if torch.equal(order, torch.arange(len(order), device=order.device)):
        return result
    return result[torch.argsort(order)]


class CpuMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign (same level assignment, same arguments) that
    pools CPU tensors with :func:`separable_roi_align`."""

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        levels = [x[name] for name in self.featmap_names]
        if levels[0].device.type != "cpu" or self.sampling_ratio <= 0:
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                levels, image_shapes, self.canonical_scale, self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        level_of = self.map_levels(boxes) if len(levels) > 1 else torch.zeros(
            len(rois), dtype=torch.long)
        # the level mapper clamps every RoI to one level, so each row is written below
        result = levels[0].new_empty(len(rois), levels[0].shape[1], *self.output_size)
        for level, (feature, scale) in enumerate(zip(levels, self.scales, strict=True)):
            picked = torch.where(level_of == level)[0]
            if len(picked):
                pooled = separable_roi_align(feature, rois[picked], self.output_size, scale,
                                             self.sampling_ratio)
                result.index_copy_(0, picked, pooled.to(result.dtype))
        return result
