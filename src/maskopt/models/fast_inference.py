"""Inference speed-ups for `maskopt remove` and the evaluation stages, applied in one
place to built networks.

The networks of :mod:`maskopt.models` are written once, plainly, for training and
evaluation alike. :func:`optimize_for_inference` changes a copy of them that will
never be trained again (what :class:`maskopt.removal.remover.Remover` holds, and the
networks the evaluation stages score, so that they score what a removal computes): it folds the
normalisations that are fixed at inference into the convolutions' weights, pools with
torchvision's RoIAlign kernel (the separable one pays only where gradients are
computed), and, for bf16 on a CPU, stores the weights channels-last, which oneDNN's
bf16 convolutions prefer, with an instance norm and a reflection pad that keep such
tensors channels-last and in bf16. ``tests/test_fast_inference.py`` checks that the
optimized networks compute what the plain ones do; ``benchmarks/remove.py`` measures
what each change buys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_ops

from maskopt.models.roi_align import CpuMultiScaleRoIAlign


def optimize_for_inference(networks: list[nn.Module], *, channels_last: bool) -> None:
    """Make ``networks`` (in eval mode, never to be trained again) faster to run
    without gradients; ``channels_last`` for bf16 on a CPU."""
    for network in networks:
        network.eval()
        fold_spectral_norm(network)
        fold_frozen_batch_norm(network)
        pool_with_torchvision(network)
        if channels_last:
            keep_channels_last(network)


def fold_spectral_norm(module: nn.Module) -> None:
    """Store each spectrally normalized weight as a plain weight.

    In eval mode spectral norm recomputes W/σ from its stored vectors on every forward
    (the same value each time): a division and a copy of every weight."""
    for m in module.modules():
        if hasattr(m, "weight_orig"):
            torch.nn.utils.remove_spectral_norm(m)


def fold_frozen_batch_norm(module: nn.Module) -> None:
    """Fold each frozen batch norm (a COCO-started ResNet's) into the convolution before
    it: the norm is a fixed per-channel affine map, y = x·scale + shift, which the
    convolution then computes as weight·scale, bias·scale + shift. The pairs are
    torchvision's ResNet's: ``convK``/``bnK`` siblings and ``(conv, bn)`` in a Sequential
    (the downsample path)."""
    for parent in list(module.modules()):
        for name, norm in list(parent.named_children()):
            conv = _conv_feeding(parent, name)
            if not isinstance(norm, misc_ops.FrozenBatchNorm2d) or not isinstance(conv, nn.Conv2d):
                continue
            with torch.no_grad():
                scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
                shift = norm.bias - norm.running_mean * scale
                bias = conv.bias * scale + shift if conv.bias is not None else shift
                conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
                conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
            setattr(parent, name, nn.Identity())


def _conv_feeding(parent: nn.Module, name: str) -> nn.Module | None:
    """The layer whose output ``parent``'s child ``name`` takes, where the naming says."""
    if isinstance(parent, nn.Sequential):
        names = [n for n, _ in parent.named_children()]
        index = names.index(name)
        return parent[index - 1] if index > 0 else None
    return getattr(parent, "conv" + name[2:], None) if name.startswith("bn") else None


def pool_with_torchvision(module: nn.Module) -> None:
    """Replace each training RoIAlign (:class:`CpuMultiScaleRoIAlign`) with torchvision's
    own, with the same arguments: its forward is faster when no gradient is needed."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, CpuMultiScaleRoIAlign):
                setattr(parent, name, MultiScaleRoIAlign(
                    child.featmap_names, child.output_size, child.sampling_ratio,
                    canonical_scale=child.canonical_scale,
                    canonical_level=child.canonical_level))


class ChannelsLastInstanceNorm(nn.Module):
    """Instance norm without affine parameters (EdgeConnect's) as group norm with one
    channel per group: the same statistics, computed on a channels-last tensor in place,
    where torch's instance norm would copy it to NCHW and the next convolution back."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, x.shape[1], eps=self.eps)


class ReflectionPadInOwnDtype(nn.ReflectionPad2d):
    """Reflection padding outside autocast, which would pad a bf16 map in fp32 (a cast up
    and back for a pure copy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


def keep_channels_last(module: nn.Module) -> None:
    """Weights channels-last, and the generators' instance norms and reflection pads
    replaced by ones that keep a channels-last bf16 tensor as it is."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.affine \
                    and not child.track_running_stats:
                setattr(parent, name, ChannelsLastInstanceNorm(child.eps))
            elif type(child) is nn.ReflectionPad2d:
                setattr(parent, name, ReflectionPadInOwnDtype(child.padding))
    module.to(memory_format=torch.channels_last)
