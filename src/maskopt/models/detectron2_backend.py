"""Optional segmenter backend: detectron2's PanopticFPN with the torchvision one's interface.

``segmenter.backend: detectron2`` selects it. detectron2 is not on the package
registries; install it from its git repository (README). The model is built from the
model-zoo config ``COCO-PanopticSegmentation/panoptic_fpn_R_{depth}_1x.yaml`` (the
network the paper used), GroupNorm when training from scratch. Targets, outputs
(:class:`Detections`, semantic logits) and label conventions (things 1..K, semantic
class 0 = unlabeled) are those of :class:`maskopt.models.segmenter.PanopticFPN`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maskopt.core.errors import MaskoptError
from maskopt.models.detections import Detections, SegmenterOutput

try:  # detectron2 is an optional extra
    from detectron2 import model_zoo
    from detectron2.modeling import build_model
    from detectron2.structures import BitMasks, Boxes, ImageList, Instances
    from detectron2.utils.events import EventStorage
except ImportError:  # pragma: no cover - exercised where detectron2 is absent
    model_zoo = None


def detectron2_available() -> bool:
    return model_zoo is not None


def remap_coco_class_rows(state: dict, thing_category_ids: list[int]) -> list[str]:
    """Keep, in place, the rows of detectron2's class-specific layers that belong to our
    things (COCO category ids, in our label order). detectron2 numbers COCO's 80 thing
    categories contiguously by id; its classifier has background as the last row."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    contiguous = {c["id"]: i for i, c in enumerate(sorted(
        (c for c in COCO_CATEGORIES if c["isthing"]), key=lambda c: c["id"]))}
    missing = [cid for cid in thing_category_ids if cid not in contiguous]
    if missing:
        raise MaskoptError(f"COCO weights have no thing class for category ids {missing}")
    rows = [contiguous[cid] for cid in thing_category_ids]
    layers = {"roi_heads.box_predictor.cls_score": [*rows, len(contiguous)],
              "roi_heads.box_predictor.bbox_pred": [4 * r + i for r in rows for i in range(4)],
              "roi_heads.mask_head.predictor": rows}
    remapped = []
    for layer, index in layers.items():
        for key in (f"{layer}.weight", f"{layer}.bias"):
            if key in state:
                state[key] = state[key][index]
                remapped.append(key)
    return remapped


class Detectron2PanopticFPN(nn.Module):
    def __init__(self, num_thing_classes: int, num_semantic_classes: int, *, depth: int = 50,
                 image_size: int = 256, weights: Literal["none", "imagenet", "coco"] = "none",
                 box_batch_size: int = 512, detections_per_image: int = 100,
                 score_threshold: float = 0.05, load_weights: bool = True,
                 thing_category_ids: list[int] | None = None,
                 proposals: dict[str, int] | None = None,
                 anchor_sizes: list[int] | None = None, freeze_at: int = 0,
                 stem_stride: int = 4, **_ignored):
        super().__init__()
        if weights == "sample-zoo":
            raise MaskoptError("segmenter.weights: sample-zoo is a torchvision-backend "
                               "segmenter; use segmenter.backend: torchvision with it")
        if stem_stride != 4:
            raise MaskoptError("the detectron2 backend keeps ResNet's stem: segmenter.stem_stride "
                               f"must be 4 (got {stem_stride})")
        if not detectron2_available():
            raise MaskoptError("segmenter.backend is detectron2 but detectron2 is not installed; "
                               "see the README (install from its git repository)")
        if depth not in (50, 101):
            raise MaskoptError(f"the detectron2 backend has model-zoo configs for depth 50 and "
                               f"101 (got {depth})")
        schedule = "1x" if depth == 50 else "3x"
        config_name = f"COCO-PanopticSegmentation/panoptic_fpn_R_{depth}_{schedule}.yaml"
        cfg = model_zoo.get_config(config_name)
        cfg.MODEL.DEVICE = "cpu"
        imagenet_url = cfg.MODEL.WEIGHTS  # the config's own ImageNet backbone weights
        cfg.MODEL.WEIGHTS = ""
        if load_weights and weights != "none":
            cfg.MODEL.WEIGHTS = (model_zoo.get_checkpoint_url(config_name) if weights == "coco"
                                 else imagenet_url)
        if weights == "none":
            # from random init, frozen batch norms diverge: GroupNorm everywhere
            cfg.MODEL.RESNETS.NORM = cfg.MODEL.FPN.NORM = "GN"
            cfg.MODEL.ROI_BOX_HEAD.NORM = cfg.MODEL.ROI_MASK_HEAD.NORM = "GN"
            cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
        cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at  # detectron2's default 2 would freeze random init
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_thing_classes
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = box_batch_size
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        cfg.TEST.DETECTIONS_PER_IMAGE = detections_per_image
        if proposals:
            cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = proposals["training"]
            cfg.MODEL.RPN.POST_NMS_TOPK_TEST = proposals["testing"]
        cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_semantic_classes
        cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 0
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[size] for size in anchor_sizes or [
            max(2, image_size // d) for d in (32, 16, 8, 4, 2)]]
        # The config's pixel format (BGR) and mean/std are those its weights were
        # trained with: images are converted to them, never the other way round.
        self.input_format = cfg.INPUT.FORMAT
        self.model = build_model(cfg)
        self.num_semantic_classes = num_semantic_classes
        self.weights_report: dict | None = None
        if cfg.MODEL.WEIGHTS:
            self.weights_report = self.load_checkpoint(
                cfg.MODEL.WEIGHTS, weights, thing_category_ids)

    def load_checkpoint(self, path: str, weights: str,
                        thing_category_ids: list[int] | None = None) -> dict:
        """Load a detectron2 checkpoint (a path or URL) and say what was left random.

        COCO weights: the class-specific rows are taken for our things from detectron2's
        contiguous COCO thing index; only the semantic predictor (other classes) may
        stay random. ImageNet weights: every backbone tensor must load. Anything else
        left random, or skipped for its shape, is an error — never silently dropped.
        """
        from detectron2.checkpoint import DetectionCheckpointer

        if weights == "coco" and thing_category_ids is None:
            raise MaskoptError("COCO weights need the COCO category id of every thing class")

        class Reporting(DetectionCheckpointer):
            """detectron2's own loading, with our class rows taken first and the keys it
            could not load kept instead of only logged."""

            def _load_model(self, checkpoint):
                self.remapped = (remap_coco_class_rows(checkpoint["model"], thing_category_ids)
                                 if weights == "coco" else [])
                self.incompatible = super()._load_model(checkpoint)
                return self.incompatible

        checkpointer = Reporting(self.model)
        checkpointer.load(path)
        incompatible, remapped = checkpointer.incompatible, checkpointer.remapped
        left = sorted({*incompatible.missing_keys,
                       *(key for key, *_ in incompatible.incorrect_shapes)})
        if weights == "coco":
            unexpected = [k for k in left if not k.startswith("sem_seg_head.predictor.")]
        else:
            unexpected = [k for k in left if k.startswith("backbone.bottom_up.")]
        if unexpected:
            raise MaskoptError(f"{path}: {len(unexpected)} tensors would be left random: "
                               + ", ".join(unexpected[:5]))
        return {"remapped": remapped, "random": left,
                "unused": sorted(incompatible.unexpected_keys)}

    # -- pieces ---------------------------------------------------------------------

    def _image_list(self, images: torch.Tensor) -> ImageList:
        """RGB images in [0, 1] → the config's pixel format, 0..255, normalised."""
        model = self.model
        if self.input_format == "BGR":
            images = images.flip(1)
        return ImageList.from_tensors(
            [(255 * img - model.pixel_mean) / model.pixel_std for img in images],
            model.backbone.size_divisibility)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.backbone(self._image_list(images).tensor)

    def semantic_probs(self, images: torch.Tensor) -> torch.Tensor:
        """The semantic head's class probabilities alone (N×C×H×W), without detecting."""
        features = self.model.backbone(self._image_list(images).tensor)
        return torch.softmax(self.model.sem_seg_head(features, None)[0].float(), 1)

    def mask_probs(self, features, boxes: list[torch.Tensor], labels: list[torch.Tensor],
                   image_sizes) -> list[torch.Tensor]:
        heads = self.model.roi_heads
        pooled = heads.mask_pooler([features[f] for f in heads.mask_in_features],
                                   [Boxes(b) for b in boxes])
        logits = heads.mask_head.layers(pooled)
        flat = torch.cat(labels) - 1  # detectron2 classes are 0-based
        probs = logits[torch.arange(len(flat), device=logits.device), flat].sigmoid()
        return list(probs[:, None].split([len(b) for b in boxes]))

    @torch.no_grad()
    def detect(self, features, proposals, image_sizes,
               min_score: float | None = None) -> list[Detections]:
        heads = self.model.roi_heads
        pooled = heads.box_pooler([features[f] for f in heads.box_in_features],
                                  [p.proposal_boxes for p in proposals])
        predictions = heads.box_predictor(heads.box_head(pooled))
        found, _ = heads.box_predictor.inference(predictions, proposals)
        if min_score is not None:  # the mask head runs on these only
            found = [f[f.scores >= min_score] for f in found]
        boxes = [f.pred_boxes.tensor for f in found]
        labels = [f.pred_classes + 1 for f in found]
        probs = self.mask_probs(features, boxes, labels, image_sizes)
        return [Detections(b, lab, f.scores, p, size)
                for b, lab, f, p, size in zip(boxes, labels, found, probs, image_sizes,
                                              strict=True)]

    # -- whole network --------------------------------------------------------------

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if self.training:
            return self.losses_and_detections(images, targets, detect=False)[0]
        return self.predict(images)

    def losses_and_detections(self, images: torch.Tensor, targets: list[dict], detect: bool = True,
                              min_score: float | None = None):
        if targets is None:
            raise MaskoptError("training the segmenter needs targets")
        model = self.model
        image_list = self._image_list(images)
        size = tuple(images.shape[-2:])
        instances = []
        for t in targets:
            inst = Instances(size)
            inst.gt_boxes = Boxes(t["boxes"].float())
            inst.gt_classes = t["labels"] - 1
            inst.gt_masks = BitMasks(t["masks"].bool())
            instances.append(inst)
        with EventStorage():
            features = model.backbone(image_list.tensor)
            proposals, proposal_losses = model.proposal_generator(image_list, features, instances)
            _, detector_losses = model.roi_heads(image_list, features, proposals, instances)
            semantic_target = torch.stack([t["semantic"] for t in targets]).long()
            coarse = model.sem_seg_head.layers(features)
            semantic_losses = model.sem_seg_head.losses(coarse, semantic_target)
        semantic = F.interpolate(coarse, scale_factor=model.sem_seg_head.common_stride,
                                 mode="bilinear", align_corners=False)
        losses = {**proposal_losses, **detector_losses, **semantic_losses}
        detections = (self.detect(features, proposals, [size] * len(images), min_score)
                      if detect else None)
        return losses, detections, semantic, features

    def predict(self, images: torch.Tensor, min_score: float | None = None) -> SegmenterOutput:
        model = self.model
        image_list = self._image_list(images)
        features = model.backbone(image_list.tensor)
        proposals, _ = model.proposal_generator(image_list, features, None)
        semantic, _ = model.sem_seg_head(features, None)
        sizes = [tuple(images.shape[-2:])] * len(images)
        return SegmenterOutput(self.detect(features, proposals, sizes, min_score), semantic,
                               features)
