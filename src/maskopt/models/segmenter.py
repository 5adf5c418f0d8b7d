"""PanopticFPN from torchvision parts: ResNet-FPN, Mask R-CNN heads and a semantic head.

Kirillov et al.'s Panoptic FPN = Mask R-CNN with FPN (instances of "thing" classes)
plus a light semantic branch over the FPN levels (every class, stuff and things).
The paper used detectron2's; this builds the same network from torchvision so the
default install needs no compiled extras (``maskopt.models.detectron2_backend`` is
the optional detectron2 version with the same interface).

Images enter at the network size (square, a multiple of 32), values in [0, 1]; the
model normalises them itself and does no resizing, so pixel coordinates of boxes and
masks are those of the input.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import misc as misc_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskopt.core.errors import MaskoptError
from maskopt.models.coco_weights import load_coco_maskrcnn
from maskopt.models.detections import Detections, SegmenterOutput
from maskopt.models.grown_box_loss import grown_boxes, mask_loss_in_boxes
from maskopt.models.roi_align import CpuMultiScaleRoIAlign
from maskopt.models.zoo_weights import load_zoo_segmenter

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_CHANNELS = {18: [64, 128, 256, 512], 34: [64, 128, 256, 512],
                   50: [256, 512, 1024, 2048]}


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups: from random init, frozen batch norms diverge."""
    return nn.GroupNorm(min(32, channels // 4), channels)


class SemanticHead(nn.Module):
    """Panoptic FPN's semantic branch: each FPN level P2..P5 is brought to the finest
    level's scale (1/4 of the input with ResNet's stem) by (3×3 conv, GN, ReLU, 2×
    upsample) stages, the levels are summed, and a 1×1 conv gives per-class logits that
    are upsampled to the input size."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 128,
                 strides: tuple[int, ...] = (4, 8, 16, 32)):
        super().__init__()
        self.finest = strides[0]
        self.levels = nn.ModuleList()
        for stride in strides:
            steps = max(1, int(math.log2(stride // self.finest)))
            layers: list[nn.Module] = []
            for step in range(steps):
                layers += [nn.Conv2d(in_channels if step == 0 else channels, channels, 3,
                                     padding=1, bias=False),
                           group_norm(channels), nn.ReLU(True)]
                if stride > self.finest:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear",
                                              align_corners=False))
            self.levels.append(nn.Sequential(*layers))
        self.predictor = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = sum(level(f) for level, f in zip(self.levels, features, strict=True))
        return F.interpolate(self.predictor(x), scale_factor=self.finest, mode="bilinear",
                             align_corners=False)


def _check_shape(depth: int, weights: str, fpn_channels: int, stem_stride: int) -> None:
    if depth not in RESNET_CHANNELS:
        raise MaskoptError(f"segmenter depth must be one of 18, 34, 50 (got {depth})")
    if weights == "coco" and (depth != 50 or fpn_channels != 256):
        raise MaskoptError("COCO weights exist for depth 50 with 256 FPN channels only")
    if stem_stride not in (2, 4):
        raise MaskoptError(f"segmenter stem_stride must be 2 or 4 (got {stem_stride})")


def _freeze(backbone: nn.Module, freeze_at: int) -> None:
    """Keep the first ``freeze_at`` backbone stages fixed (1 = the stem)."""
    for stage in [(backbone.body.conv1, backbone.body.bn1), *(
            (getattr(backbone.body, f"layer{i}"),) for i in range(1, 5))][:freeze_at]:
        for module in stage:
            module.requires_grad_(False)


def _anchor_generator(anchor_sizes: list[int] | None, image_size: int) -> AnchorGenerator:
    """One anchor size per level P2..P6, three aspect ratios; by default they scale with
    the input, 1/32 .. 1/2 of its side."""
    if anchor_sizes is None:
        anchor_sizes = [max(2, image_size // d) for d in (32, 16, 8, 4, 2)]
    if len(anchor_sizes) != 5:
        raise MaskoptError(f"segmenter.anchor_sizes needs one size per FPN level P2..P6 "
                           f"(5), got {len(anchor_sizes)}")
    sizes = tuple((int(size),) for size in anchor_sizes)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


class PanopticFPN(nn.Module):
    """Panoptic FPN: ``forward`` returns a dict of losses in training (their sum is
    L_PS), and ``SegmenterOutput`` (detections + semantic logits) in eval mode.

    ``num_thing_classes`` excludes the background; ``num_semantic_classes`` includes
    class 0 = unlabeled, which the semantic loss ignores. Its shape: ``anchor_sizes``,
    px per FPN level P2..P6 (default: 1/32 .. 1/2 of the side); ``freeze_at``, the first
    backbone stages kept fixed (1 = the stem, 2 = stem and res2: detectron2's
    FREEZE_AT, for a pretrained start; 0 from scratch); ``stem_stride``, 4 for ResNet's
    stem (conv + max pool), 2 without the max pool, so every level has twice the
    resolution (P2 at 1/2: on 64 px inputs a limb is 2–3 px wide, and at 1/4 the mask
    head pools it from less than one cell); ``mask_resolution``, the mask head's
    RoIAlign grid, its masks twice as fine (14: Mask R-CNN's 28×28);
    ``mask_head_channels``, its convs' width (default ``fpn_channels``).
    """

    def __init__(self, num_thing_classes: int, num_semantic_classes: int, *, depth: int = 50,
                 fpn_channels: int = 256, image_size: int = 256,
                 weights: Literal["none", "sample-zoo", "imagenet", "coco"] = "none",
                 box_batch_size: int = 512, detections_per_image: int = 100,
                 score_threshold: float = 0.05, load_weights: bool = True,
                 thing_category_ids: list[int] | None = None, grown_box_margin: float = 0.0,
                 proposals: dict[str, int] | None = None,
                 anchor_sizes: list[int] | None = None, freeze_at: int = 0,
                 stem_stride: Literal[2, 4] = 4, mask_resolution: int = 14,
                 mask_head_channels: int | None = None):
        """``weights`` picks the norms (GroupNorm from scratch and for the sample's zoo,
        which was trained from scratch; frozen BN for ImageNet or COCO starts) and, when
        ``load_weights``, loads them; restoring a saved model passes
        ``load_weights=False`` so nothing is downloaded. ``thing_category_ids`` are the
        COCO category ids of thing labels 1..K, needed to take the class rows of the
        COCO weights. ``grown_box_margin`` (a fraction of the image side) adds the mask
        loss on ground-truth boxes grown by a random margin up to it (see
        :meth:`grown_box_mask_loss`). ``proposals``: RPN proposals kept per image after
        NMS, ``training`` and ``testing`` (torchvision's 2000 and 1000 without it). The
        shape's arguments are in the class's docstring."""
        super().__init__()
        _check_shape(depth, weights, fpn_channels, stem_stride)
        self.grown_box_margin = grown_box_margin * image_size
        self.num_semantic_classes = num_semantic_classes
        scratch = weights in ("none", "sample-zoo")
        backbone = _resnet_fpn(depth, fpn_channels, pretrained=not scratch,
                               load=load_weights and weights == "imagenet",
                               stem_pool=stem_stride == 4)
        _freeze(backbone, freeze_at)
        anchors = _anchor_generator(anchor_sizes, image_size)
        head_channels = mask_head_channels or fpn_channels
        mask_head = MaskRCNNHeads(fpn_channels, [head_channels] * 4, 1,
                                  norm_layer=group_norm if scratch else None)
        box_features = max(256, 4 * fpn_channels)
        maskrcnn = MaskRCNN(
            backbone, rpn_anchor_generator=anchors,
            box_head=TwoMLPHead(fpn_channels * 7 * 7, box_features),
            box_predictor=FastRCNNPredictor(box_features, num_thing_classes + 1),
            mask_head=mask_head,
            mask_predictor=MaskRCNNPredictor(head_channels, head_channels,
                                             num_thing_classes + 1),
            box_roi_pool=CpuMultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2),
            mask_roi_pool=CpuMultiScaleRoIAlign(["0", "1", "2", "3"], mask_resolution, 2),
            box_batch_size_per_image=box_batch_size,
            box_detections_per_img=detections_per_image, box_score_thresh=score_threshold,
            **({"rpn_post_nms_top_n_train": proposals["training"],
                "rpn_post_nms_top_n_test": proposals["testing"]} if proposals else {}))
        # Panoptic FPN reuses Mask R-CNN's parts; its image transform is not used.
        self.backbone, self.rpn = maskrcnn.backbone, maskrcnn.rpn
        self.roi_heads = maskrcnn.roi_heads
        self.semantic_head = SemanticHead(fpn_channels, num_semantic_classes,
                                          channels=max(32, fpn_channels // 2),
                                          strides=tuple(stem_stride * 2**i for i in range(4)))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.weights_report: dict | None = None
        if weights == "coco" and load_weights:
            if thing_category_ids is None or len(thing_category_ids) != num_thing_classes:
                raise MaskoptError("COCO weights need the COCO category id of every thing class")
            self.weights_report = load_coco_maskrcnn(self, thing_category_ids)
        if weights == "sample-zoo" and load_weights:
            self.weights_report = load_zoo_segmenter(self, {
                "num_thing_classes": num_thing_classes,
                "num_semantic_classes": num_semantic_classes, "depth": depth,
                "fpn_channels": fpn_channels, "image_size": image_size,
                "anchor_sizes": anchor_sizes, "stem_stride": stem_stride,
                "mask_head_channels": mask_head_channels})

    # -- pieces ---------------------------------------------------------------------

    def features(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise MaskoptError(f"segmenter input must be a multiple of 32 px, "
                               f"got {tuple(images.shape[-2:])}")
        return self.backbone((images - self.mean) / self.std)

    def semantic_logits(self, features: OrderedDict[str, torch.Tensor]) -> torch.Tensor:
        return self.semantic_head([features[k] for k in ("0", "1", "2", "3")])

    def semantic_probs(self, images: torch.Tensor) -> torch.Tensor:
        """The semantic head's class probabilities alone (N×C×H×W), without detecting."""
        return torch.softmax(self.semantic_logits(self.features(images)).float(), 1)

    def mask_logits(self, features: OrderedDict[str, torch.Tensor], boxes: list[torch.Tensor],
                    labels: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """The mask head's logits (n×2r×2r over all images, r = ``mask_resolution``) of
        ``labels`` inside ``boxes``."""
        heads = self.roi_heads
        pooled = heads.mask_roi_pool(features, boxes, image_sizes)
        logits = heads.mask_predictor(heads.mask_head(pooled))
        flat_labels = torch.cat(labels)
        return logits[torch.arange(len(flat_labels), device=logits.device), flat_labels]

    def mask_probs(self, features: OrderedDict[str, torch.Tensor], boxes: list[torch.Tensor],
                   labels: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> list:
        """Mask head probabilities (n×1×2r×2r per image) of ``labels`` inside ``boxes``."""
        probs = self.mask_logits(features, boxes, labels, image_sizes).sigmoid()
        return list(probs[:, None].split([len(b) for b in boxes]))

    def grown_box_mask_loss(self, features, targets: list[dict], image_sizes) -> torch.Tensor:
        """The mask loss on each ground-truth box grown by a random margin in
        [0, ``grown_box_margin``] px (:mod:`maskopt.models.grown_box_loss`)."""
        boxes = grown_boxes([t["boxes"] for t in targets], image_sizes, self.grown_box_margin)
        if sum(len(b) for b in boxes) == 0:
            return features["0"].sum() * 0  # no instance: keep every rank's graph the same
        logits = self.mask_logits(features, boxes, [t["labels"] for t in targets], image_sizes)
        return mask_loss_in_boxes(logits, [t["masks"] for t in targets], boxes)

    @torch.no_grad()
    def detect(self, features, proposals, image_sizes,
               min_score: float | None = None) -> list[Detections]:
        """Boxes from the box head, masks from the mask head, without gradient: they
        choose the segment, whose mask is then computed anew on its grown box
        (:func:`maskopt.models.selection.segment_mask`), with gradient. With
        ``min_score``, only the detections scoring at least that are kept."""
        heads = self.roi_heads
        pooled = heads.box_roi_pool(features, proposals, image_sizes)
        class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        boxes, scores, labels = heads.postprocess_detections(
            class_logits, box_regression, proposals, image_sizes)
        if min_score is not None:
            kept = [score >= min_score for score in scores]
            boxes, scores, labels = ([x[k] for x, k in zip(xs, kept, strict=True)]
                                     for xs in (boxes, scores, labels))
        probs = self.mask_probs(features, boxes, labels, image_sizes)
        return [Detections(b, lab, s, p, size)
                for b, lab, s, p, size in zip(boxes, labels, scores, probs, image_sizes,
                                              strict=True)]

    # -- whole network --------------------------------------------------------------

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if self.training:
            losses, *_ = self.losses_and_detections(images, targets, detect=False)
            return losses
        return self.predict(images)

    def losses_and_detections(self, images: torch.Tensor, targets: list[dict], detect: bool = True,
                              min_score: float | None = None):
        """L_PS terms and, sharing the features, the detections scoring ``min_score`` or
        more (what joint training needs); returns (losses, detections, semantic logits,
        features). ``targets``: per image ``boxes`` (xyxy), ``labels`` (1..K), ``masks``
        (n×H×W), and ``semantic`` (H×W class indices, 0 = unlabeled)."""
        if targets is None:
            raise MaskoptError("training the segmenter needs targets")
        features = self.features(images)
        sizes = [tuple(images.shape[-2:])] * len(images)
        image_list = ImageList(images, sizes)
        instance_targets = [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets]
        proposals, rpn_losses = self.rpn(image_list, features, instance_targets)
        _, roi_losses = self.roi_heads(features, proposals, sizes, instance_targets)
        semantic = self.semantic_logits(features)
        semantic_target = torch.stack([t["semantic"] for t in targets]).long()
        losses = {**rpn_losses, **roi_losses,
                  "loss_semantic": F.cross_entropy(semantic, semantic_target, ignore_index=0)}
        if self.grown_box_margin > 0:
            losses["loss_mask_grown_box"] = self.grown_box_mask_loss(features, targets, sizes)
        detections = self.detect(features, proposals, sizes, min_score) if detect else None
        return losses, detections, semantic, features

    def predict(self, images: torch.Tensor, min_score: float | None = None) -> SegmenterOutput:
        """Detections (those scoring ``min_score`` or more, if given: the mask head, at
        100 detections almost half of this, then runs on those only) and class logits."""
        features = self.features(images)
        sizes = [tuple(images.shape[-2:])] * len(images)
        proposals, _ = self.rpn(ImageList(images, sizes), features)
        return SegmenterOutput(self.detect(features, proposals, sizes, min_score),
                               self.semantic_logits(features), features)


def _resnet_fpn(depth: int, fpn_channels: int, pretrained: bool, load: bool,
                stem_pool: bool = True) -> BackboneWithFPN:
    if fpn_channels % 32:
        raise MaskoptError(f"segmenter FPN channels must be a multiple of 32 (got {fpn_channels})")
    builder = getattr(resnet, f"resnet{depth}")
    if pretrained:
        weights = getattr(resnet, f"ResNet{depth}_Weights").IMAGENET1K_V1 if load else None
        try:
            body = builder(weights=weights, norm_layer=misc_ops.FrozenBatchNorm2d)
        except Exception as exc:  # noqa: BLE001 - any download/cache failure
            raise MaskoptError(f"cannot load ImageNet ResNet{depth} weights ({exc}); connect "
                               "to the internet once, or set segmenter.weights: none") from exc
        norm = None
    else:
        body = builder(weights=None, norm_layer=group_norm)
        norm = group_norm
    if not stem_pool:
        body.maxpool = nn.Identity()
    return BackboneWithFPN(body, {f"layer{i}": str(i - 1) for i in range(1, 5)},
                           RESNET_CHANNELS[depth], fpn_channels, LastLevelMaxPool(),
                           norm_layer=norm)
