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
generator. The class maps therefore pass a low-rank path of k channels: the
segmentation inpainter always embeds its one-hot input with a 1×1 convolution C → k
(k = ``class_channels``, or a quarter of ``width`` without it). With ``class_channels``
(params ``inpainter.class_channels``, 16 in the paper-scale profile) the segmentation
inpainter also writes k channels that a 1×1 convolution maps to the C logits, and the
image inpainter embeds its class input C → k the same way; without it (the sample,
whose C is 9) those two layers are full width.

The inpainters return raw predictions; :func:`composite` keeps the known pixels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


def _maybe_sn(module: nn.Module, use: bool) -> nn.Module:
    return spectral_norm(module) if use else module


class ResidualBlock(nn.Module):
    """Reflect-pad, dilated 3×3 conv, IN, ReLU, 3×3 conv, IN; added to the input."""

    def __init__(self, channels: int, dilation: int = 2, use_spectral_norm: bool = False):
        super().__init__()
        sn, bias = use_spectral_norm, not use_spectral_norm
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _maybe_sn(nn.Conv2d(channels, channels, 3, dilation=dilation, bias=bias), sn),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _maybe_sn(nn.Conv2d(channels, channels, 3, bias=bias), sn),
            nn.InstanceNorm2d(channels),
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
            nn.ReflectionPad2d(3),
            _maybe_sn(nn.Conv2d(in_channels, w, 7), sn), nn.InstanceNorm2d(w), nn.ReLU(True),
            _maybe_sn(nn.Conv2d(w, 2 * w, 4, 2, 1), sn), nn.InstanceNorm2d(2 * w), nn.ReLU(True),
            _maybe_sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), sn), nn.InstanceNorm2d(4 * w),
            nn.ReLU(True),
        )
        self.middle = nn.Sequential(*[ResidualBlock(4 * w, 2, sn) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _maybe_sn(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), sn), nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            _maybe_sn(nn.ConvTranspose2d(2 * w, w, 4, 2, 1), sn), nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
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
    """Softmax over the class channel (dim 1) of N×C×H×W logits."""
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
        self.embed = nn.Conv2d(num_classes, embedded, 1)
        self.generator = InpaintGenerator(embedded + 1, class_channels or num_classes, width,
                                          blocks, use_spectral_norm=True)
        self.to_classes = (nn.Conv2d(class_channels, num_classes, 1) if class_channels
                           else nn.Identity())

    def forward(self, segmentation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``segmentation``: one-hot or class probabilities, N×C×H×W."""
        embedded = self.embed(segmentation * (1 - mask))
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
        self.embed = (nn.Conv2d(num_classes, class_channels, 1) if class_channels
                      else nn.Identity())
        self.generator = InpaintGenerator(3 + 1 + (class_channels or num_classes) + 1, 3,
                                          width, blocks)

    def forward(self, image: torch.Tensor, edges: torch.Tensor, segmentation: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """``segmentation``: class probabilities, N×C×H×W."""
        x = torch.cat([mask_input(image, mask), edges, self.embed(segmentation), mask], dim=1)
        return (torch.tanh(self.generator(x)) + 1) / 2


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def inpaint_in_order(edge: EdgeInpainter, segmentation: SegmentationInpainter,
                     image: ImageInpainter, rgb: torch.Tensor, gray: torch.Tensor,
                     edges: torch.Tensor, classes: torch.Tensor,
                     mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Edge → segmentation → image inpainting with ``mask`` (paper Sec. III-B), each
    output composited with its input (prediction inside the mask, the input outside):
    what the next network, the joint losses and a user get. ``classes``: class
    probabilities, N×C×H×W."""
    edges, classes = guides_in_order(edge, segmentation, gray, edges, classes, mask)
    rgb = composite(image(rgb, edges, classes, mask), rgb, mask)
    return {"edge": edges, "segmentation": classes, "image": rgb}


def guides_in_order(edge: EdgeInpainter, segmentation: SegmentationInpainter,
                    gray: torch.Tensor, edges: torch.Tensor, classes: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image inpainter's guides with ``mask``: the edge and the segmentation
    inpainters' outputs, each composited with its input."""
    edges = composite(edge(gray, edges, mask), edges, mask)
    classes = composite(class_probabilities(segmentation(classes, mask)), classes, mask)
    return edges, classes
