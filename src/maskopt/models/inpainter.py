"""EdgeConnect-style generator and PatchGAN discriminator, and the three inpainters.

All three inpainters (paper Sec. III-B) share one generator topology (EdgeConnect,
Nazeri et al.): 7×7 conv → two stride-2 4×4 convs → dilated residual blocks →
mirrored decoder, instance norm. ``width`` is the first layer's channels (64 in the
paper); the sample profile shrinks it to train on a laptop CPU.

Channel layouts (mask ``m``: 1 = hole; "masked" x = x·(1-m) + m, holes white as in
EdgeConnect; segmentation maps are one-hot over C classes, class 0 = unlabeled):

    edge inpainter          in [gray_masked, edges·(1-m), m]        (3)      → 1 edge prob.
    segmentation inpainter  in [embed(onehot·(1-m)), m]              (C → k, + 1) → k → C logits
    image inpainter         in [rgb_masked, edges, embed(seg), m]    (3+1+k+1)→ RGB in [0, 1]

Where this differs from EdgeConnect, and why: COCO has C = 134 classes, and a 7×7
convolution that reads or writes 134 channels at 256 px costs as much as half a
generator. The class maps therefore pass a low-rank path of k = ``class_channels``
channels (params ``inpainter.class_channels``, 16 in the paper-scale profile): a 1×1
embedding C → k before the first 7×7 convolution, and for the segmentation
inpainter's output a 7×7 convolution into k channels then a 1×1 to the C logits
(benchmarks/models.py gives the FLOPs). Without ``class_channels`` (the sample
profile, whose C is 9, and model files made before) the layers are full width.

The inpainters return raw predictions; :func:`composite` keeps the known pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def _maybe_sn(module: nn.Module, use: bool) -> nn.Module:
    return spectral_norm(module) if use else module


def fold_spectral_norm(module: nn.Module) -> None:
    """Store each spectrally normalized weight as a plain weight, for inference only.

    In eval mode spectral norm recomputes W/σ from its stored vectors on every forward
    (the same value each time): a division and a copy of every weight, ~10 % of the
    segmentation inpainter's bf16 forward at 256 px. Training must not do this.
    """
    for m in module.modules():
        if hasattr(m, "weight_orig"):
            torch.nn.utils.remove_spectral_norm(m)


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)


class InstanceNorm(nn.InstanceNorm2d):
    """InstanceNorm2d (no affine, no running statistics, as EdgeConnect's) that keeps a
    channels-last input channels-last.

    torch's instance norm copies a channels-last tensor to NCHW, and the next
    convolution copies it back: in `maskopt remove` (bf16, channels-last weights) those
    copies were 40 % of the generators' time. GroupNorm with one channel per group
    computes the same statistics on channels-last tensors in place. Training runs NCHW
    and keeps torch's instance norm (GroupNorm's backward is slower on channels-last).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _channels_last(x):
            return F.group_norm(x, x.shape[1], eps=self.eps)
        return super().forward(x)


class ReflectionPad(nn.ReflectionPad2d):
    """ReflectionPad2d that pads a channels-last tensor in its own dtype under autocast.

    Autocast runs reflection padding in fp32: a bf16 map is cast up, padded and cast
    down again by the next convolution, two extra passes for a pure copy. Only the
    channels-last inference path skips the casts (for training, padding in bf16 would
    sum the reflected gradients in bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _channels_last(x):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x)
        return super().forward(x)


class ClassEmbedding(nn.Conv2d):
    """The 1×1 convolution C → k that embeds a class map (the low-rank class path).

    ``forward(x, keep)`` is ``conv(x · keep)`` for a per-pixel ``keep`` (N×1×H×W, the
    known pixels). Inference (no grad) computes the same map as W·x·keep + b (the
    conv is linear) outside autocast, in fp32 and in the map's own layout: autocast
    would first copy the 134-channel map to bf16, oneDNN's 1×1 convolution of an NCHW
    map first copies it to channels-last, and masking it is one more pass; at 256 px
    those took 15-35 ms against 2-5 ms for the product. Training keeps the plain conv
    (its numerics and speed unchanged).
    """

    def __init__(self, num_classes: int, channels: int):
        super().__init__(num_classes, channels, 1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x if keep is None else x * keep)
        with torch.autocast(x.device.type, enabled=False):
            x, weight = x.float(), self.weight.float()
            if _channels_last(x):
                y = F.conv2d(x, weight)
            else:  # one matrix product per NCHW image: 5-7× faster than oneDNN's conv
                y = torch.matmul(weight.flatten(1), x.flatten(2)).unflatten(2, x.shape[2:])
            if keep is not None:
                y = y * keep.float()
            return y + self.bias.float()[:, None, None]


class ResidualBlock(nn.Module):
    """Reflect-pad, dilated 3×3 conv, IN, ReLU, 3×3 conv, IN; added to the input."""

    def __init__(self, channels: int, dilation: int = 2, use_spectral_norm: bool = False):
        super().__init__()
        sn, bias = use_spectral_norm, not use_spectral_norm
        self.body = nn.Sequential(
            ReflectionPad(dilation),
            _maybe_sn(nn.Conv2d(channels, channels, 3, dilation=dilation, bias=bias), sn),
            InstanceNorm(channels),
            nn.ReLU(True),
            ReflectionPad(1),
            _maybe_sn(nn.Conv2d(channels, channels, 3, bias=bias), sn),
            InstanceNorm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class InpaintGenerator(nn.Module):
    """EdgeConnect generator: encoder (÷4), ``blocks`` residual blocks, decoder (×4).

    Input height and width must be multiples of 4. Returns raw (pre-activation) maps.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, blocks: int = 8,
                 use_spectral_norm: bool = False):
        super().__init__()
        w, sn = width, use_spectral_norm
        self.encoder = nn.Sequential(
            ReflectionPad(3),
            _maybe_sn(nn.Conv2d(in_channels, w, 7), sn), InstanceNorm(w), nn.ReLU(True),
            _maybe_sn(nn.Conv2d(w, 2 * w, 4, 2, 1), sn), InstanceNorm(2 * w), nn.ReLU(True),
            _maybe_sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), sn), InstanceNorm(4 * w),
            nn.ReLU(True),
        )
        self.middle = nn.Sequential(*[ResidualBlock(4 * w, 2, sn) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _maybe_sn(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), sn), InstanceNorm(2 * w),
            nn.ReLU(True),
            _maybe_sn(nn.ConvTranspose2d(2 * w, w, 4, 2, 1), sn), InstanceNorm(w),
            nn.ReLU(True),
            ReflectionPad(3),
            nn.Conv2d(w, out_channels, 7),  # never spectral-normed (as EdgeConnect)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"generator input must be a multiple of 4 px, got {tuple(x.shape)}")
        return self.decoder(self.middle(self.encoder(x)))


class PatchDiscriminator(nn.Module):
    """70×70 PatchGAN (5 convs, spectral norm). Returns the logit map and the 5 feature maps."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        self.in_channels = in_channels
        w = width
        specs = [(in_channels, w, 2), (w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 1)]
        self.convs = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1, bias=False)),
                          nn.LeakyReLU(0.2, True))
            for cin, cout, stride in specs)
        self.head = spectral_norm(nn.Conv2d(8 * w, 1, 4, 1, 1, bias=False))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for conv in self.convs:
            x = conv(x)
            features.append(x)
        logits = self.head(x)
        return logits, [*features, logits]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, 0.02) conv weights and zero biases (EdgeConnect's init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            weight = getattr(m, "weight_orig", m.weight)
            nn.init.normal_(weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def mask_input(x: torch.Tensor, mask: torch.Tensor, fill: float = 1.0) -> torch.Tensor:
    """Blank the hole: x·(1-m) + fill·m (soft masks blend)."""
    return x * (1 - mask) + fill * mask


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class channel (dim 1) of N×C×H×W logits.

    A channels-last tensor is normalized along its contiguous last axis: at 134
    classes and 256 px that is 3× faster than torch's softmax over dim 1 of the same
    tensor, and equal to float rounding (1e-7); an NCHW tensor takes torch's own path.
    """
    if _channels_last(logits):
        return torch.softmax(logits.permute(0, 2, 3, 1), -1).permute(0, 3, 1, 2)
    return torch.softmax(logits, 1)


def composite(prediction: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Prediction inside the hole, the original pixels outside it."""
    return prediction * mask + known * (1 - mask)


class EdgeInpainter(nn.Module):
    """Masked grayscale + masked edges + mask → edge probabilities (1 channel)."""

    def __init__(self, width: int = 64, blocks: int = 8):
        super().__init__()
        self.generator = InpaintGenerator(3, 1, width, blocks, use_spectral_norm=True)

    def forward(self, gray: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.cat([mask_input(gray, mask), edges * (1 - mask), mask], dim=1)
        return torch.sigmoid(self.generator(x))


def default_class_channels(width: int) -> int:
    """k of the low-rank class path: a quarter of the first layer's width, at least 4."""
    return max(4, width // 4)


class SegmentationInpainter(nn.Module):
    """Masked one-hot segmentation + mask → class logits (C channels).

    The one-hot map is embedded by a 1×1 conv into k channels before the 7×7 input
    conv; with ``class_channels`` = k the generator also writes k channels, which a
    1×1 conv maps to the C logits (without it, the 7×7 output conv writes C).
    """

    def __init__(self, num_classes: int, width: int = 64, blocks: int = 8,
                 class_channels: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        embedded = class_channels or default_class_channels(width)
        self.embed = ClassEmbedding(num_classes, embedded)
        self.generator = InpaintGenerator(embedded + 1, class_channels or num_classes, width,
                                          blocks, use_spectral_norm=True)
        self.to_classes = (nn.Conv2d(class_channels, num_classes, 1) if class_channels
                           else nn.Identity())

    def forward(self, segmentation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``segmentation``: one-hot or class probabilities, N×C×H×W."""
        embedded = self.embed(segmentation, keep=1 - mask)
        return self.to_classes(self.generator(torch.cat([embedded, mask], dim=1)))


class ImageInpainter(nn.Module):
    """Masked RGB + inpainted edges + inpainted segmentation + mask → RGB in [0, 1].

    With ``class_channels`` = k the class probabilities are embedded by a 1×1 conv
    into k channels before the 7×7 input conv (without it, all C channels go in).
    """

    def __init__(self, num_classes: int, width: int = 64, blocks: int = 8,
                 class_channels: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.embed = ClassEmbedding(num_classes, class_channels) if class_channels \
            else nn.Identity()
        self.generator = InpaintGenerator(3 + 1 + (class_channels or num_classes) + 1, 3,
                                          width, blocks)

    def forward(self, image: torch.Tensor, edges: torch.Tensor, segmentation: torch.Tensor,
                mask: torch.Tensor, *, embedded: bool = False) -> torch.Tensor:
        """``segmentation``: class probabilities, or with ``embedded`` their ``embed``."""
        classes = segmentation if embedded else self.embed(segmentation)
        x = torch.cat([mask_input(image, mask), edges, classes, mask], dim=1)
        return (torch.tanh(self.generator(x)) + 1) / 2


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
