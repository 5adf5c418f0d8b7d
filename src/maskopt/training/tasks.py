"""One optimisation step for each training stage (paper Sec. III-B to III-D).

Each task owns its networks (``modules``, checkpointed) and optimizers, and its
``step(batch)`` returns the loss values it logs. GAN steps follow EdgeConnect:
D sees real and detached fake; G's loss goes through D, whose gradients from that
pass are discarded (backward restricted to G's parameters).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from maskopt.core.device import autocast, use_bf16
from maskopt.core.imaging import one_hot, segmentation_colours, tensor_to_rgb
from maskopt.models import losses
from maskopt.models.build import build_discriminator
from maskopt.models.inpainter import inpaint_in_order
from maskopt.models.inpainter_kinds import KINDS
from maskopt.models.selection import (
    PANOPTIC_SCORE,
    box_margin,
    selected_mask,
    straight_through,
)
from maskopt.pipeline.params import Params
from maskopt.training.distributed import Context
from maskopt.training.loop import sync_gradients

ADAM_BETAS = (0.0, 0.9)  # EdgeConnect's, for generators and discriminators
SEGMENTER_ADAM_BETAS = (0.9, 0.999)  # Adam's defaults, as PanopticFPN with Adam (paper IV-A)


def instance_targets(batch: dict) -> list[dict]:
    return [{**inst, "semantic": sem} for inst, sem in zip(batch["instances"], batch["semantic"],
                                                            strict=True)]


def training_bf16(params: Params, ctx: Context) -> bool:
    """``train.amp``: bfloat16 autocast where the device runs it fast (maskopt.core.device)."""
    return use_bf16("auto" if params.train.amp else "fp32", ctx.device)


def _step(optimizer, parameters, loss, ctx: Context) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=parameters)
    sync_gradients(parameters, ctx)
    optimizer.step()


def _vgg(params: Params, device) -> losses.VGG19Features | None:
    """The VGG19 of the perceptual and style losses; None when both weights are 0 (the
    sample profile: a random VGG19 costs most of the image step and adds nothing)."""
    if params.loss.lambda_if == 0 and params.loss.lambda_is == 0:
        return None
    return losses.VGG19Features(params.inpainter.vgg_weights, seed=params.seed).to(device)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """N×C×H×W in [0, 1] (C = 1 or 3) → a row-major grid H×(N·W)×3 uint8."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return tensor_to_rgb(torch.cat(list(images), dim=2))  # 3×H×(N·W)


def image_grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Stack rows (each N×C×H×W) into one picture: one column per sample."""
    return np.concatenate([_to_uint8(r) for r in rows], axis=0)


class SegmentationTask:
    """Pretrain the segmenter with L_PS = RPN + box + mask + semantic losses, by Adam (the
    paper's, from COCO weights) or AdamW (``train.segmentation.optimizer``)."""

    name = "pretrain_segmentation"

    def __init__(self, segmenter: nn.Module, params: Params, ctx: Context):
        self.segmenter = segmenter.to(ctx.device).train()
        self.ctx, self.bf16 = ctx, training_bf16(params, ctx)
        self.params_list = [p for p in segmenter.parameters() if p.requires_grad]
        schedule = params.train.segmentation
        optimizer = torch.optim.AdamW if schedule.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(self.params_list, schedule.lr, betas=SEGMENTER_ADAM_BETAS,
                                   weight_decay=schedule.weight_decay)
        # the lr drops 10x at the given fractions of the steps; checkpointed with the
        # optimizer, so a resumed run drops at the same steps
        self.lr_schedule = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, [round(f * schedule.steps) for f in schedule.lr_drops], gamma=0.1)
        self.modules = {"segmenter": segmenter}
        self.optimizers = {"segmenter": self.optimizer, "segmenter_lr": self.lr_schedule}

    def step(self, batch: dict) -> dict[str, float]:
        with autocast(self.ctx.device, self.bf16):
            parts = self.segmenter(batch["image"], instance_targets(batch))
        loss = sum(parts.values())
        _step(self.optimizer, self.params_list, loss, self.ctx)
        self.lr_schedule.step()
        return {"loss_ps": loss.item(), **{k: v.item() for k, v in parts.items()}}

    @torch.no_grad()
    def grid(self, batch: dict) -> np.ndarray:
        self.segmenter.eval()
        out = self.segmenter(batch["image"])
        self.segmenter.train()
        num_classes = out.semantic_logits.shape[1]
        masks = torch.stack([d.soft_masks()[d.scores > 0.5].amax(0, keepdim=True)
                             if (d.scores > 0.5).any() else torch.zeros_like(batch["mask"][0])
                             for d in out.detections])
        return image_grid([batch["image"],
                           segmentation_colours(batch["semantic"], num_classes),
                           segmentation_colours(out.semantic_logits.argmax(1), num_classes),
                           batch["mask"], masks])


class InpainterTask:
    """Pretrain one inpainter with GT masks M_G and targets from I_G; its inputs, losses,
    logged measure and grid are its kind's (maskopt.models.inpainter_kinds).

    The segmentation inpainter's input seg(I) is the class probabilities of
    ``class_input`` (the pretrained segmenter, frozen): what the network gets in joint
    training, evaluation and `remove`; without it, one-hot labels. The image inpainter
    learns from I_G's clean guides (EdgeConnect's stage 2), and joint training then
    adapts it to predicted ones.
    """

    def __init__(self, kind: str, generator: nn.Module, params: Params, ctx: Context,
                 num_classes: int, class_input: nn.Module | None = None):
        self.kind, self.ctx, self.bf16 = KINDS[kind], ctx, training_bf16(params, ctx)
        self.class_input = None if class_input is None else class_input.to(ctx.device).eval()
        # The frozen segmenter gives a pair the same probabilities every epoch: with the
        # pairs cached in memory (the sample), so are they, per (pair, flip).
        self.class_cache = {} if params.train.cache_pairs and class_input is not None else None
        self.name = f"pretrain_inpainter@{kind}"
        self.weights = params.loss
        self.num_classes = num_classes
        self.generator = generator.to(ctx.device).train()
        self.discriminator = build_discriminator(kind, num_classes, params.inpainter.width)
        self.discriminator.to(ctx.device).train()
        lr = params.train.inpainter.lr
        self.g_params = list(self.generator.parameters())
        self.d_params = list(self.discriminator.parameters())
        self.g_opt = torch.optim.Adam(self.g_params, lr, betas=ADAM_BETAS)
        self.d_opt = torch.optim.Adam(self.d_params, lr * params.train.d_lr_ratio,
                                      betas=ADAM_BETAS)
        self.vgg = _vgg(params, ctx.device) if self.kind.needs_vgg else None
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = {"generator": self.g_opt, "discriminator": self.d_opt}

    def _forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(generator output, what D sees as fake, what D sees as real)."""
        classes = self.classes_of_input(batch) if self.kind.reads_classes else None
        return self.kind.pretraining_forward(self.generator, batch, classes, self.num_classes)

    def classes_of_input(self, batch: dict) -> torch.Tensor:
        """The segmentation inpainter's input: seg(I), as the class docstring says."""
        if self.class_input is None:
            return one_hot(batch["semantic"], self.num_classes)
        if self.class_cache is None:
            with torch.no_grad():
                return self.class_input.semantic_probs(batch["image"])
        keys = list(zip(batch["name"], batch["flipped"], strict=True))
        new = [i for i, key in enumerate(keys) if key not in self.class_cache]
        if new:
            with torch.no_grad():
                probs = self.class_input.semantic_probs(batch["image"][new])
            self.class_cache.update({keys[i]: p for i, p in zip(new, probs, strict=True)})
        return torch.stack([self.class_cache[key] for key in keys])

    def step(self, batch: dict) -> dict[str, float]:
        with autocast(self.ctx.device, self.bf16):
            out, fake, real = self._forward(batch)
            d_real, real_features = self.discriminator(real)
            d_fake, _ = self.discriminator(fake.detach())
            d_loss = losses.hinge_discriminator_loss(d_real, d_fake)
            g_fake, fake_features = self.discriminator(fake)
            terms = self.kind.generator_terms(self.weights, batch, out,
                                              losses.hinge_generator_loss(g_fake),
                                              fake_features, real_features, self.vgg,
                                              seg_is_probability=False)
        g_loss = sum(terms.values())
        _step(self.d_opt, self.d_params, d_loss, self.ctx)
        _step(self.g_opt, self.g_params, g_loss, self.ctx)
        return {"loss_g": g_loss.item(), "loss_d": d_loss.item(),
                **{k: v.item() for k, v in terms.items()},
                **self.kind.hole_quality(out, batch, batch["mask"])}

    @torch.no_grad()
    def grid(self, batch: dict) -> np.ndarray:
        out, _, _ = self._forward(batch)
        return image_grid(self.kind.grid_rows(out, batch, self.num_classes))


def inpaint_with_mask(generators: dict[str, nn.Module], batch: dict, mask: torch.Tensor,
                      seg_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The composites of edge → segmentation → image inpainting with ``mask``
    (N×1×H×W) — what inference makes."""
    return inpaint_in_order(generators["edge"], generators["segmentation"], generators["image"],
                            batch["image"], batch["gray"], batch["edges"], seg_probs, mask)


def joint_inpainting_losses(composites: dict[str, torch.Tensor], discriminators: dict,
                            batch: dict, weights, vgg, num_classes: int):
    """Joint L_E + L_S + L_I on the composites, against I_G's edges, labels and pixels
    over the whole image: any part of the person the mask misses stays in the
    composite and is paid for. Returns (generator terms, discriminator losses)."""
    d_losses, terms = {}, {}
    for kind, d in discriminators.items():
        fake, real = KINDS[kind].joint_fake_real(composites[kind], batch, num_classes)
        d_real, real_features = d(real)
        d_fake, _ = d(fake.detach())
        d_losses[kind] = losses.hinge_discriminator_loss(d_real, d_fake)
        g_fake, fake_features = d(fake)
        terms.update(KINDS[kind].generator_terms(
            weights, batch, composites[kind], losses.hinge_generator_loss(g_fake),
            fake_features, real_features, vgg, seg_is_probability=True))
    return terms, d_losses


class JointTask:
    """End-to-end training (Sec. III-C/D): segmenter → mask of the segment that
    overlaps M_G most → edge, segmentation and image inpainters with that mask;
    L_SN = L_PS + L_E + L_S + L_I + λX·L_X, discriminators updated in alternation.

    The inpainters see a binary mask (straight-through: the same kind of mask as at
    inference), the segmenter gets the soft mask's gradient; the mask head runs on
    the selected box grown by ``box_margin`` px so the mask can extend past it.
    """

    name = "train_joint"

    def __init__(self, segmenter: nn.Module, generators: dict[str, nn.Module],
                 discriminators: dict[str, nn.Module], params: Params, ctx: Context,
                 num_classes: int):
        self.ctx, self.bf16, self.weights = ctx, training_bf16(params, ctx), params.loss
        self.alpha, self.use_mel = params.alpha, params.train.mask_expansion
        self.margin = box_margin(params.alpha, params.synthesize.image_size)
        self.num_classes = num_classes
        self.segmenter = segmenter.to(ctx.device).train()
        self.g = {k: m.to(ctx.device).train() for k, m in generators.items()}
        self.d = {k: m.to(ctx.device).train() for k, m in discriminators.items()}
        lr = params.train.joint.lr
        segmenter_params = [p for p in segmenter.parameters() if p.requires_grad]
        generator_params = [p for m in self.g.values() for p in m.parameters()]
        self.main_params = segmenter_params + generator_params
        # PanopticFPN's Adam (default betas) for the segmenter, EdgeConnect's for the GAN.
        self.optimizer = torch.optim.Adam(
            [{"params": segmenter_params, "betas": SEGMENTER_ADAM_BETAS},
             {"params": generator_params, "betas": ADAM_BETAS}], lr)
        self.d_opts = {k: torch.optim.Adam(d.parameters(), lr * params.train.d_lr_ratio,
                                           betas=ADAM_BETAS) for k, d in self.d.items()}
        self.vgg = _vgg(params, ctx.device)
        self.modules = {"segmenter": segmenter, **{f"g_{k}": m for k, m in self.g.items()},
                        **{f"d_{k}": m for k, m in self.d.items()}}
        self.optimizers = {"main": self.optimizer, **{f"d_{k}": o for k, o in self.d_opts.items()}}

    def forward(self, batch: dict) -> dict:
        """Everything of one joint pass, for the step and for the grids."""
        images = batch["image"]
        # the selection only considers panoptic segments (score >= PANOPTIC_SCORE)
        parts, detections, semantic, features = self.segmenter.losses_and_detections(
            images, instance_targets(batch), min_score=PANOPTIC_SCORE)
        masks = []
        for b, det in enumerate(detections):
            one = {k: v[b:b + 1] for k, v in features.items()}
            soft, _ = selected_mask(self.segmenter, one, det, batch["mask"][b, 0], self.margin,
                                    box_fallback=True)
            masks.append(soft)
        soft = torch.stack(masks)[:, None]
        # The segmenter's semantic map is an input here, not something the inpainting
        # losses should rewrite (they compare with I_G, where the person is gone).
        seg_probs = torch.softmax(semantic.detach().float(), 1)
        composites = inpaint_with_mask(self.g, batch, straight_through(soft), seg_probs)
        return {"parts": parts, "soft_mask": soft, "composites": composites}

    def step(self, batch: dict) -> dict[str, float]:
        with autocast(self.ctx.device, self.bf16):
            f = self.forward(batch)
            soft = f["soft_mask"]
            terms, d_losses = joint_inpainting_losses(f["composites"], self.d, batch,
                                                      self.weights, self.vgg, self.num_classes)
            l_ps = sum(f["parts"].values())
            l_x = losses.mask_expansion_loss(soft, batch["phi"], self.alpha)
        total = l_ps + sum(terms.values())
        if self.use_mel:
            total = total + self.weights.lambda_x * l_x
        for kind, opt in self.d_opts.items():
            _step(opt, list(self.d[kind].parameters()), d_losses[kind], self.ctx)
        _step(self.optimizer, self.main_params, total, self.ctx)
        with torch.no_grad():
            gt = batch["mask"] > 0.5
            hard = soft > 0.5
            coverage = (hard & gt).sum() / gt.sum().clamp_min(1)
            added = (hard & ~gt).float().mean()
        return {"loss_sn": total.item(), "loss_ps": l_ps.item(), "loss_x": l_x.item(),
                **{k: v.item() for k, v in terms.items()},
                **KINDS["image"].hole_quality(f["composites"]["image"], batch, batch["mask"]),
                **{f"loss_d_{k}": v.item() for k, v in d_losses.items()},
                "coverage": coverage.item(), "added_area": added.item()}

    @torch.no_grad()
    def grid(self, batch: dict) -> np.ndarray:
        f = self.forward(batch)
        return image_grid([batch["image"], batch["mask"], (f["soft_mask"] > 0.5).float(),
                           f["composites"]["image"], batch["target"]])
