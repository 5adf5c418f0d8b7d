"""One class per inpainter kind (paper Sec. III-B): what each network is built from,
what it and its discriminator see, its generator losses, the plain measure its
training logs and the rows of its training grid.

Pretraining, joint training and `build` read a kind from :data:`KINDS`; adding an
inpainter is a network in ``inpainter.py``, a class here and its stage in dvc.yaml.
``batch`` is a training batch of ``maskopt.data.pairs`` (``image``, ``gray``,
``edges``, ``semantic`` of I; ``target*`` of I_G; ``mask`` = M_G).
"""

from __future__ import annotations

import torch
from torch import nn

from maskopt.core.imaging import one_hot, segmentation_colours
from maskopt.models import losses
from maskopt.models.inpainter import (
    EdgeInpainter,
    ImageInpainter,
    SegmentationInpainter,
    composite,
)


class InpainterKind:
    """What every kind shares: its config. A kind with a class path takes the low-rank
    class channels k where they are set (see maskopt.models.inpainter)."""

    name: str
    reads_classes = False  # whether its input is a class map seg(I) the task provides
    needs_vgg = False  # whether its losses use VGG19 features
    class_path = False

    def config(self, num_classes: int, width: int, blocks: int,
               class_channels: int | None) -> dict:
        config = {"kind": self.name, "num_classes": num_classes, "width": width,
                  "blocks": blocks}
        if self.class_path and class_channels:
            config["class_channels"] = class_channels
        return config


class EdgeKind(InpainterKind):
    """[gray(I), Canny(I)] masked → Canny(I_G); L_E = λEG·hinge + λEF·feature matching.
    D sees [gray(I_G), edges]."""

    name = "edge"

    def build(self, config: dict) -> nn.Module:
        return EdgeInpainter(config["width"], config["blocks"])

    def discriminator_channels(self, num_classes: int) -> int:
        return 2

    def pretraining_forward(self, generator: nn.Module, batch: dict, classes, num_classes: int):
        """(generator output, what D sees as fake, what D sees as real)."""
        out = generator(batch["gray"], batch["edges"], batch["mask"])
        return (out, *self.joint_fake_real(out, batch, num_classes))

    def joint_fake_real(self, out, batch: dict, num_classes: int):
        return (torch.cat([batch["target_gray"], out], 1),
                torch.cat([batch["target_gray"], batch["target_edges"]], 1))

    def generator_terms(self, w, batch: dict, out, adversarial, fake_features, real_features,
                        vgg, seg_is_probability: bool) -> dict[str, torch.Tensor]:
        return {"loss_eg": w.lambda_eg * adversarial,
                "loss_ef": w.lambda_ef * losses.feature_matching_loss(fake_features,
                                                                      real_features)}

    @torch.no_grad()
    def hole_quality(self, out, batch: dict, mask) -> dict[str, float]:
        return {"hole_edge_l1": losses.masked_l1_loss(out, batch["target_edges"], mask).item()}

    def grid_rows(self, out, batch: dict, num_classes: int) -> list[torch.Tensor]:
        mask = batch["mask"]
        return [batch["image"], mask, composite(out, batch["edges"], mask),
                batch["target_edges"]]


class SegmentationKind(InpainterKind):
    """seg(I) masked → seg(I_G); L_S = λSG·hinge + λSC·CE. seg(I) is what the task
    gives as ``classes`` (a frozen segmenter's probabilities, or one-hot labels).
    D sees class probabilities."""

    name = "segmentation"
    reads_classes = True
    class_path = True

    def build(self, config: dict) -> nn.Module:
        return SegmentationInpainter(**_arguments(config))

    def discriminator_channels(self, num_classes: int) -> int:
        return num_classes

    def pretraining_forward(self, generator: nn.Module, batch: dict, classes, num_classes: int):
        out = generator(classes, batch["mask"])
        return out, torch.softmax(out, 1), one_hot(batch["target_semantic"], num_classes)

    def joint_fake_real(self, out, batch: dict, num_classes: int):
        return out, one_hot(batch["target_semantic"], num_classes)

    def generator_terms(self, w, batch: dict, out, adversarial, fake_features, real_features,
                        vgg, seg_is_probability: bool) -> dict[str, torch.Tensor]:
        cross_entropy = (losses.composite_cross_entropy if seg_is_probability
                         else losses.masked_cross_entropy)
        return {"loss_sg": w.lambda_sg * adversarial,
                "loss_sc": w.lambda_sc * cross_entropy(out, batch["target_semantic"],
                                                       batch["mask"])}

    @torch.no_grad()
    def hole_quality(self, out, batch: dict, mask) -> dict[str, float]:
        right = (out.argmax(1, keepdim=True) == batch["target_semantic"][:, None]).float()
        return {"hole_accuracy": ((right * mask).sum() / mask.sum().clamp_min(1)).item()}

    def grid_rows(self, out, batch: dict, num_classes: int) -> list[torch.Tensor]:
        mask = batch["mask"]
        pred = composite(out.argmax(1, keepdim=True), batch["semantic"][:, None], mask)
        return [batch["image"], mask, segmentation_colours(pred[:, 0].long(), num_classes),
                segmentation_colours(batch["target_semantic"], num_classes)]


class ImageKind(InpainterKind):
    """I masked + the edges and classes of I_G (EdgeConnect's stage 2: clean guides in
    pretraining, predicted ones in joint training) → I_G; L_I = λIG·hinge +
    λIF·perceptual + λIS·style + λIR·L1/N_M. D sees RGB."""

    name = "image"
    needs_vgg = True
    class_path = True

    def build(self, config: dict) -> nn.Module:
        return ImageInpainter(**_arguments(config))

    def discriminator_channels(self, num_classes: int) -> int:
        return 3

    def pretraining_forward(self, generator: nn.Module, batch: dict, classes, num_classes: int):
        seg = one_hot(batch["target_semantic"], num_classes)
        out = generator(batch["image"], batch["target_edges"], seg, batch["mask"])
        return out, out, batch["target"]

    def joint_fake_real(self, out, batch: dict, num_classes: int):
        return out, batch["target"]

    def generator_terms(self, w, batch: dict, out, adversarial, fake_features, real_features,
                        vgg, seg_is_probability: bool) -> dict[str, torch.Tensor]:
        object_mask, target = batch["mask"], batch["target"]
        terms = {"loss_ig": w.lambda_ig * adversarial,
                 "loss_ir": w.lambda_ir * losses.reconstruction_l1_loss(out, target,
                                                                        object_mask)}
        if vgg is not None:
            out_features, style_out = vgg(out), vgg(out * object_mask)
            with torch.no_grad():  # the targets need no graph
                target_features, style_target = vgg(target), vgg(target * object_mask)
            terms["loss_if"] = w.lambda_if * losses.perceptual_loss(out_features, target_features)
            terms["loss_is"] = w.lambda_is * losses.style_loss(style_out, style_target)
        return terms

    @torch.no_grad()
    def hole_quality(self, out, batch: dict, mask) -> dict[str, float]:
        return {"hole_l1": losses.masked_l1_loss(out, batch["target"], mask).item()}

    def grid_rows(self, out, batch: dict, num_classes: int) -> list[torch.Tensor]:
        mask = batch["mask"]
        return [batch["image"], mask, composite(out, batch["image"], mask), batch["target"]]


def _arguments(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "kind"}


# in the order they inpaint (edge → segmentation → image), the stages' order too
KINDS = {kind.name: kind for kind in (EdgeKind(), SegmentationKind(), ImageKind())}
