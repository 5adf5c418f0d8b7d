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
from maskopt.core.imaging import one_hot, tensor_to_rgb
from maskopt.models import losses
from maskopt.models.build import build_discriminator
from maskopt.models.inpainter import composite, inpaint_in_order
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


def segmentation_colours(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices → N×3×H×W colours from a fixed palette, for grids."""
    rng = np.random.default_rng(7)
    palette = torch.from_numpy(rng.uniform(0.15, 1, (num_classes, 3)).astype(np.float32))
    palette[0] = 0
    return palette.to(labels.device)[labels].permute(0, 3, 1, 2)


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
    """Pretrain one inpainter with GT masks M_G and targets from I_G.

    edge: [gray(I), Canny(I)] masked → Canny(I_G);  L_E = λEG·hinge + λEF·feature matching.
    segmentation: seg(I) masked → seg(I_G);  L_S = λSG·hinge + λSC·CE. seg(I) is the
    class probabilities of ``class_input`` (the pretrained segmenter, frozen): what the
    network gets in joint training, evaluation and `remove`; without it, one-hot labels.
    image: I masked + GT edges and segmentation of I_G (EdgeConnect's stage 2: the image
    inpainter learns from clean guides, and joint training then adapts it to predicted
    ones) → I_G;  L_I = λIG·hinge + λIF·perceptual + λIS·style + λIR·L1/N_M.
    """

    def __init__(self, kind: str, generator: nn.Module, params: Params, ctx: Context,
                 num_classes: int, class_input: nn.Module | None = None):
        self.kind, self.ctx, self.bf16 = kind, ctx, training_bf16(params, ctx)
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
        self.vgg = _vgg(params, ctx.device) if kind == "image" else None
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = {"generator": self.g_opt, "discriminator": self.d_opt}

    def _forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(generator output, what D sees as fake, what D sees as real)."""
        mask = batch["mask"]
        if self.kind == "edge":
            out = self.generator(batch["gray"], batch["edges"], mask)
            return out, torch.cat([batch["target_gray"], out], 1), \
                torch.cat([batch["target_gray"], batch["target_edges"]], 1)
        if self.kind == "segmentation":
            out = self.generator(self.classes_of_input(batch), mask)
            return out, torch.softmax(out, 1), one_hot(batch["target_semantic"], self.num_classes)
        seg = one_hot(batch["target_semantic"], self.num_classes)
        out = self.generator(batch["image"], batch["target_edges"], seg, mask)
        return out, out, batch["target"]

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
            terms = generator_terms(self.kind, self.weights, batch, out, g_fake, fake_features,
                                    real_features, self.vgg)
        g_loss = sum(terms.values())
        _step(self.d_opt, self.d_params, d_loss, self.ctx)
        _step(self.g_opt, self.g_params, g_loss, self.ctx)
        return {"loss_g": g_loss.item(), "loss_d": d_loss.item(),
                **{k: v.item() for k, v in terms.items()},
                **hole_quality(self.kind, out, batch, batch["mask"])}

    @torch.no_grad()
    def grid(self, batch: dict) -> np.ndarray:
        out, _, _ = self._forward(batch)
        mask = batch["mask"]
        if self.kind == "edge":
            return image_grid([batch["image"], mask, composite(out, batch["edges"], mask),
                               batch["target_edges"]])
        if self.kind == "segmentation":
            pred = composite(out.argmax(1, keepdim=True), batch["semantic"][:, None], mask)
            colour = segmentation_colours
            return image_grid([batch["image"], mask,
                               colour(pred[:, 0].long(), self.num_classes),
                               colour(batch["target_semantic"], self.num_classes)])
        return image_grid([batch["image"], mask, composite(out, batch["image"], mask),
                           batch["target"]])


@torch.no_grad()
def hole_quality(kind: str, out: torch.Tensor, batch: dict, mask: torch.Tensor) -> dict:
    """A plain, loss-independent measure inside the hole, to see learning in the logs
    (GAN losses themselves need not fall)."""
    if kind == "edge":
        return {"hole_edge_l1": losses.masked_l1_loss(out, batch["target_edges"], mask).item()}
    if kind == "segmentation":
        right = (out.argmax(1, keepdim=True) == batch["target_semantic"][:, None]).float()
        return {"hole_accuracy": ((right * mask).sum() / mask.sum().clamp_min(1)).item()}
    return {"hole_l1": losses.masked_l1_loss(out, batch["target"], mask).item()}


def generator_terms(kind: str, w, batch: dict, out, g_fake, fake_features, real_features,
                    vgg, seg_is_probability: bool = False) -> dict[str, torch.Tensor]:
    """The weighted generator losses of one inpainter (paper Sec. III-B).

    Every term is normalised by, or restricted to, the ground-truth object M_G
    (``batch["mask"]``), never by a predicted mask. ``out`` is the raw prediction in
    pretraining and the composite (prediction inside the predicted mask, input
    outside) in joint training, where segmentation ``out`` holds probabilities.
    """
    object_mask = batch["mask"]
    adversarial = losses.hinge_generator_loss(g_fake)
    if kind == "edge":
        return {"loss_eg": w.lambda_eg * adversarial,
                "loss_ef": w.lambda_ef * losses.feature_matching_loss(fake_features,
                                                                      real_features)}
    if kind == "segmentation":
        cross_entropy = (losses.composite_cross_entropy if seg_is_probability
                         else losses.masked_cross_entropy)
        return {"loss_sg": w.lambda_sg * adversarial,
                "loss_sc": w.lambda_sc * cross_entropy(out, batch["target_semantic"],
                                                       object_mask)}
    target = batch["target"]
    terms = {"loss_ig": w.lambda_ig * adversarial,
             "loss_ir": w.lambda_ir * losses.reconstruction_l1_loss(out, target, object_mask)}
    if vgg is not None:
        out_features, style_out = vgg(out), vgg(out * object_mask)
        with torch.no_grad():  # the targets need no graph
            target_features, style_target = vgg(target), vgg(target * object_mask)
        terms["loss_if"] = w.lambda_if * losses.perceptual_loss(out_features, target_features)
        terms["loss_is"] = w.lambda_is * losses.style_loss(style_out, style_target)
    return terms


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
    fake = {"edge": torch.cat([batch["target_gray"], composites["edge"]], 1),
            "segmentation": composites["segmentation"], "image": composites["image"]}
    real = {"edge": torch.cat([batch["target_gray"], batch["target_edges"]], 1),
            "segmentation": one_hot(batch["target_semantic"], num_classes),
            "image": batch["target"]}
    d_losses, terms = {}, {}
    for kind, d in discriminators.items():
        d_real, real_features = d(real[kind])
        d_fake, _ = d(fake[kind].detach())
        d_losses[kind] = losses.hinge_discriminator_loss(d_real, d_fake)
        g_fake, fake_features = d(fake[kind])
        terms.update(generator_terms(kind, weights, batch, composites[kind], g_fake,
                                     fake_features, real_features, vgg,
                                     seg_is_probability=True))
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
                **hole_quality("image", f["composites"]["image"], batch, batch["mask"]),
                **{f"loss_d_{k}": v.item() for k, v in d_losses.items()},
                "coverage": coverage.item(), "added_area": added.item()}

    @torch.no_grad()
    def grid(self, batch: dict) -> np.ndarray:
        f = self.forward(batch)
        return image_grid([batch["image"], batch["mask"], (f["soft_mask"] > 0.5).float(),
                           f["composites"]["image"], batch["target"]])
