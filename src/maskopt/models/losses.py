"""The losses of the paper (Sec. III-B to III-D).

Conventions: images in [0, 1], NCHW; masks are 1 inside the hole (the object to
remove) and 0 on known pixels.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maskopt.core.errors import MaskoptError

# --- adversarial ---------------------------------------------------------------------


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator, halved as in EdgeConnect:
    (E relu(1 - D(x)) + E relu(1 + D(G(z)))) / 2."""
    return (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()) / 2


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: -E D(G(z))."""
    return -fake_logits.mean()


def feature_matching_loss(fake_features: list[torch.Tensor],
                          real_features: list[torch.Tensor]) -> torch.Tensor:
    """Σ_i mean|D_i(fake) - D_i(real)| over the discriminator's layers; real side detached."""
    return sum(F.l1_loss(fake, real.detach()) for fake, real in zip(fake_features, real_features,
                                                                     strict=True))


# --- reconstruction ------------------------------------------------------------------


def reconstruction_l1_loss(output: torch.Tensor, target: torch.Tensor,
                           object_mask: torch.Tensor) -> torch.Tensor:
    """The paper's L_IR = ‖target − output‖₁ / N_M, as EdgeConnect computes it.

    The absolute error is averaged over *all* pixels and channels and divided by the
    batch's hole fraction (N_M / number of pixels), so the loss does not shrink with
    small objects. ``object_mask`` is the ground-truth object M_G, never a predicted
    mask: a predicted mask used as a weight would let the segmenter lower the loss by
    dropping the pixels that are hard to fill.
    """
    fraction = object_mask.float().mean().clamp_min(1.0 / object_mask[0].numel())
    return (output - target).abs().mean() / fraction


def masked_l1_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |output - target| over the hole pixels only (a readable log value, not a loss)."""
    per_pixel = (output - target).abs().mean(dim=1, keepdim=True)
    return (per_pixel * mask).sum() / mask.sum().clamp_min(1.0)


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                         ignore_index: int = 0) -> torch.Tensor:
    """Cross-entropy of the segmentation inpainter over hole pixels (class 0 = unlabeled).

    ``mask`` is the ground-truth hole M_G (pretraining: the only hole there is)."""
    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    weight = mask[:, 0] * (target != ignore_index)
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def composite_cross_entropy(probabilities: torch.Tensor, target: torch.Tensor,
                            object_mask: torch.Tensor, ignore_index: int = 0) -> torch.Tensor:
    """Joint training's L_SC: cross-entropy of the *composited* class probabilities
    (inpainted inside the predicted mask, the segmenter's own outside) over every
    labelled pixel, divided by the labelled pixels of M_G — a person pixel the mask
    misses still says "person" where I_G has background, and is paid for."""
    log_p = probabilities.float().clamp_min(1e-6).log()
    per_pixel = F.nll_loss(log_p, target, ignore_index=ignore_index, reduction="none")
    labelled = (target != ignore_index).float()
    hole = (object_mask[:, 0] * labelled).sum().clamp_min(1.0)
    return (per_pixel * labelled).sum() / hole


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """F Fᵀ / (C·H·W) per sample, as in EdgeConnect's style loss."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


# --- VGG19 perceptual and style -------------------------------------------------------

# Indices into torchvision's vgg19().features of the ReLUs we read.
VGG19_RELU = {"relu1_1": 1, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_4": 17,
              "relu4_1": 20, "relu4_4": 26, "relu5_1": 29, "relu5_2": 31}
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")


class VGG19Features(nn.Module):
    """Frozen VGG19 that returns the ReLU activations the perceptual and style losses use.

    ``weights="imagenet"`` loads torchvision's ImageNet weights and fails with a clear
    error when they cannot be had (no internet, no cache). ``weights="random"`` is the
    explicit offline mode: a fixed random network, announced with a warning, whose
    losses still compare feature statistics but carry no ImageNet semantics.
    """

    def __init__(self, weights: Literal["imagenet", "random"] = "imagenet", seed: int = 0):
        super().__init__()
        # imported here: the sample's losses run without VGG19 (lambda_if = lambda_is = 0)
        # and its stages then start without torchvision (maskopt.models.detections)
        from torchvision.models import VGG19_Weights, vgg19

        if weights == "imagenet":
            try:
                net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
            except Exception as exc:  # noqa: BLE001 - any download/cache failure
                raise MaskoptError(
                    f"cannot load ImageNet VGG19 weights ({type(exc).__name__}: {exc}); "
                    "connect to the internet once, or set inpainter.vgg_weights: random") from exc
        elif weights == "random":
            warnings.warn("inpainter.vgg_weights=random: perceptual and style losses use a random "
                          "VGG19, not ImageNet features", stacklevel=2)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = vgg19(weights=None)
        else:
            raise MaskoptError(f"unknown VGG19 weights {weights!r} (use imagenet or random)")
        last = max(VGG19_RELU.values())
        self.layers = net.features[: last + 1].eval()
        self.layers.requires_grad_(False)
        self._wanted = {index: name for name, index in VGG19_RELU.items()}

    def train(self, mode: bool = True) -> VGG19Features:
        super().train(mode)
        self.layers.eval()  # always frozen
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        # [0, 1] images without ImageNet mean/std, as EdgeConnect's loss feeds VGG19:
        # λ_IF = 0.1 and λ_IS = 250 were tuned for activations of that size.
        x = images
        out = {}
        for index, layer in enumerate(self.layers):
            # in-place ReLUs would overwrite the activations we keep
            x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            if index in self._wanted:
                out[self._wanted[index]] = x
        return out


def perceptual_loss(out_features: dict, target_features: dict) -> torch.Tensor:
    """Σ L1 between VGG19 relu{1..5}_1 activations of the output and the target."""
    return sum(F.l1_loss(out_features[k], target_features[k].detach()) for k in PERCEPTUAL_LAYERS)


def style_loss(out_features: dict, target_features: dict) -> torch.Tensor:
    """Σ L1 between Gram matrices at relu2_2, relu3_4, relu4_4, relu5_2."""
    return sum(F.l1_loss(gram_matrix(out_features[k]), gram_matrix(target_features[k].detach()))
               for k in STYLE_LAYERS)


# --- mask expansion (Sec. III-D) ------------------------------------------------------


def mask_expansion_loss(soft_mask: torch.Tensor, phi: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_X = mean_p (φ(p) - α) · m̂(p), a boundary loss (Kervadec et al.) shifted by α.

    Pixels with φ < α (the object and a band α wide around it) lower the loss by being
    in the mask; the rest raise it. The paper writes a sum; we take the mean over
    pixels and batch so that λ_X = 1000 means the same at every image size.
    """
    if soft_mask.shape != phi.shape:
        raise MaskoptError(f"soft mask {tuple(soft_mask.shape)} and φ {tuple(phi.shape)} differ")
    return ((phi - alpha) * soft_mask).mean()
