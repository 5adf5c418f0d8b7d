"""detectron2's PanopticFPN, the paper's segmenter, with the torchvision backend's interface.

``segmenter.backend: detectron2`` selects it (params-coco.yaml does). detectron2 is not
on the package registries; install it from its git repository (README). The network is
the model zoo's ``COCO-PanopticSegmentation/panoptic_fpn_R_{depth}_3x.yaml``, whose COCO
weights load whole, the semantic head included (:mod:`maskopt.models.detectron2_weights`);
GroupNorm when training from scratch.

Input: with ``input_size_test`` set, images are resized as detectron2 resizes them for
these weights (ResizeShortestEdge: the short side to ``input_size_test``, in training a
random choice of ``input_sizes_train``, the long side at most ``input_max_size``), and the
anchors stay the published 32..512 px. Boxes and masks come back in input pixels. The
features carry, under ``TO_INPUT``, each image's factors from network to input pixels.

Semantic head: detectron2's panoptic convention (one "things" class plus stuff). What
this backend gives as semantic logits is the paper's S, the panoptic output:
detectron2's combination of instances and stuff, one-hot over our classes (0 = void),
as log-probabilities.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from maskopt.core.errors import MaskoptError
from maskopt.models.detections import Detections, SegmenterOutput
from maskopt.models.detectron2_weights import (
    IGNORE,
    SemanticClasses,
    check_panoptic,
    load_report,
    remap_coco_classes,
)
from maskopt.models.grown_box_loss import grown_boxes, mask_loss_in_boxes

try:  # detectron2 is an optional extra
    from detectron2 import model_zoo
    from detectron2.data.transforms import ResizeShortestEdge
    from detectron2.layers import paste_masks_in_image
    from detectron2.modeling import build_model
    from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
    from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
    from detectron2.structures import BitMasks, Boxes, ImageList, Instances
    from detectron2.utils.events import EventStorage
except ImportError:  # pragma: no cover - exercised where detectron2 is absent
    model_zoo = None

ZOO_CONFIG = "COCO-PanopticSegmentation/panoptic_fpn_R_{depth}_3x.yaml"
TO_INPUT = "to_input"  # features key: per image (x, y) factors, network → input pixels
LOG_ZERO = -30.0  # a class the panoptic output did not choose: softmax gives it ~1e-13


def detectron2_available() -> bool:
    return model_zoo is not None


def zoo_config(depth: int):
    """detectron2's config of the paper's network (3x: the model zoo's longest-trained
    R50 and R101 PanopticFPN)."""
    if depth not in (50, 101):
        raise MaskoptError(f"the detectron2 backend has model-zoo configs for depth 50 and "
                           f"101 (got {depth})")
    cfg = model_zoo.get_config(ZOO_CONFIG.format(depth=depth))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


class Detectron2PanopticFPN(nn.Module):
    def __init__(self, num_thing_classes: int, num_semantic_classes: int, *, depth: int = 50,
                 image_size: int = 256, weights: Literal["none", "imagenet", "coco"] = "none",
                 box_batch_size: int = 512, detections_per_image: int = 100,
                 score_threshold: float = 0.05, load_weights: bool = True,
                 thing_category_ids: list[int] | None = None, categories: list[dict] | None = None,
                 grown_box_margin: float = 0.0, proposals: dict[str, int] | None = None,
                 anchor_sizes: list[int] | None = None, freeze_at: int = 0,
                 stem_stride: int = 4, input_sizes_train: list[int] | None = None,
                 input_size_test: int | None = None, input_max_size: int = 1333, **_ignored):
        """``categories``: the taxonomy's (``index``, ``id``, ``isthing``), which maps our
        classes onto detectron2's semantic head. ``grown_box_margin``: as the torchvision
        backend's (a fraction of ``image_size``). Anchors: ``anchor_sizes``, else the
        published ones with resizing, else those scaled to ``image_size``."""
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
        self.classes = SemanticClasses.from_categories(categories, num_thing_classes,
                                                       num_semantic_classes)
        self.input_size_test = input_size_test
        self.input_sizes_train = tuple(input_sizes_train or [input_size_test or 0])
        self.input_max_size = input_max_size
        self.grown_box_margin = grown_box_margin * image_size
        cfg = zoo_config(depth)
        imagenet_url = cfg.MODEL.WEIGHTS  # the config's own ImageNet backbone weights
        cfg.MODEL.WEIGHTS = ""
        if load_weights and weights != "none":
            cfg.MODEL.WEIGHTS = (model_zoo.get_checkpoint_url(ZOO_CONFIG.format(depth=depth))
                                 if weights == "coco" else imagenet_url)
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
        cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = self.classes.num_detectron2_classes
        cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = IGNORE
        if anchor_sizes or not input_size_test:
            cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[size] for size in anchor_sizes or [
                max(2, image_size // d) for d in (32, 16, 8, 4, 2)]]
        # The config's pixel format (BGR) and mean/std are those its weights were
        # trained with: images are converted to them, never the other way round.
        self.input_format = cfg.INPUT.FORMAT
        self.model = build_model(cfg)
        self.weights_report: dict | None = None
        if cfg.MODEL.WEIGHTS:
            self.weights_report = self.load_checkpoint(
                cfg.MODEL.WEIGHTS, weights, thing_category_ids)

    def load_checkpoint(self, path: str, weights: str,
                        thing_category_ids: list[int] | None = None) -> dict:
        """Load a detectron2 checkpoint (a path or URL, the model zoo's format) and say
        which layers came from it.

        COCO weights: a whole PanopticFPN, its class-specific rows taken for our
        classes; nothing may stay random. ImageNet weights: every backbone tensor must
        load. Anything else is an error naming the file, raised before the network is
        used — never a partly loaded network.
        """
        from detectron2.checkpoint import DetectionCheckpointer

        if weights == "coco" and thing_category_ids is None:
            raise MaskoptError("COCO weights need the COCO category id of every thing class")
        classes = self.classes

        class Reporting(DetectionCheckpointer):
            """detectron2's own loading, with our class rows taken first and the keys it
            could not load kept instead of only logged."""

            def _load_model(self, checkpoint):
                self.remapped = []
                if weights == "coco":
                    check_panoptic(checkpoint["model"], path)
                    self.remapped = remap_coco_classes(checkpoint["model"], path,
                                                       thing_category_ids, classes)
                self.incompatible = super()._load_model(checkpoint)
                return self.incompatible

        checkpointer = Reporting(self.model)
        checkpointer.load(path)
        report = load_report(path, self.model.state_dict(), checkpointer.incompatible,
                             checkpointer.remapped)
        left = report["random"]
        unexpected = left if weights == "coco" else [
            k for k in left if k.startswith("backbone.bottom_up.")]
        if unexpected:
            raise MaskoptError(f"{path}: {len(unexpected)} tensors would be left random: "
                               + ", ".join(unexpected[:5]))
        return report

    # -- input scale ----------------------------------------------------------------

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The size detectron2's ResizeShortestEdge gives an input (training: a random
        choice of the training sizes); unchanged without ``input_size_test``."""
        sizes = self.input_sizes_train if self.training else (self.input_size_test,)
        short = sizes[int(torch.randint(len(sizes), ()))] if len(sizes) > 1 else sizes[0]
        if not short:
            return height, width
        return ResizeShortestEdge.get_output_shape(height, width, short, self.input_max_size)

    def _image_list(self, images: torch.Tensor) -> tuple[ImageList, torch.Tensor]:
        """RGB images in [0, 1] → the network's size and pixel format, normalised; and
        the (x, y) factors from network to input pixels."""
        height, width = images.shape[-2:]
        size = self.network_size(height, width)
        if size != (height, width):
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        if self.input_format == "BGR":
            images = images.flip(1)
        model = self.model
        image_list = ImageList.from_tensors(
            [(255 * img - model.pixel_mean) / model.pixel_std for img in images],
            model.backbone.size_divisibility)
        factors = images.new_tensor([width / size[1], height / size[0]])
        return image_list, factors.expand(len(images), 2)

    def _features(self, image_list: ImageList, to_input: torch.Tensor) -> dict:
        return {**self.model.backbone(image_list.tensor), TO_INPUT: to_input}

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._features(*self._image_list(images))

    # -- pieces ---------------------------------------------------------------------

    def mask_logits(self, features, boxes: list[torch.Tensor], labels: list[torch.Tensor],
                    image_sizes=None) -> torch.Tensor:
        """The mask head's logits (n×28×28 over all images) of ``labels`` inside
        ``boxes`` (input pixels)."""
        heads = self.model.roi_heads
        factors = features[TO_INPUT].repeat(1, 2)  # (x, y, x, y) per image
        here = [Boxes(b / f) for b, f in zip(boxes, factors, strict=True)]
        pooled = heads.mask_pooler([features[f] for f in heads.mask_in_features], here)
        logits = heads.mask_head.layers(pooled)
        flat = torch.cat(labels) - 1  # detectron2 classes are 0-based
        return logits[torch.arange(len(flat), device=logits.device), flat]

    def mask_probs(self, features, boxes: list[torch.Tensor], labels: list[torch.Tensor],
                   image_sizes=None) -> list[torch.Tensor]:
        probs = self.mask_logits(features, boxes, labels).sigmoid()
        return list(probs[:, None].split([len(b) for b in boxes]))

    def grown_box_mask_loss(self, features, targets: list[dict], image_sizes) -> torch.Tensor:
        """The mask loss on each ground-truth box grown by a random margin in
        [0, ``grown_box_margin``] input px (:mod:`maskopt.models.grown_box_loss`)."""
        boxes = grown_boxes([t["boxes"] for t in targets], image_sizes, self.grown_box_margin)
        if sum(len(b) for b in boxes) == 0:
            return features["p2"].sum() * 0  # no instance: keep every rank's graph the same
        logits = self.mask_logits(features, boxes, [t["labels"] for t in targets])
        return mask_loss_in_boxes(logits, [t["masks"] for t in targets], boxes)

    @torch.no_grad()
    def detect(self, features, proposals, input_size: tuple[int, int],
               min_score: float | None = None) -> list[Detections]:
        """Boxes from the box head, in input pixels as detectron2's postprocessing
        scales and clips them, and the mask head's masks inside them."""
        heads = self.model.roi_heads
        pooled = heads.box_pooler([features[f] for f in heads.box_in_features],
                                  [p.proposal_boxes for p in proposals])
        found, _ = heads.box_predictor.inference(heads.box_predictor(heads.box_head(pooled)),
                                                 proposals)
        found = [detector_postprocess(f, *input_size) for f in found]
        if min_score is not None:  # the mask head runs on these only
            found = [f[f.scores >= min_score] for f in found]
        boxes = [f.pred_boxes.tensor for f in found]
        labels = [f.pred_classes + 1 for f in found]
        probs = self.mask_probs(features, boxes, labels)
        return [Detections(b, lab, f.scores, p, input_size)
                for b, lab, f, p in zip(boxes, labels, found, probs, strict=True)]

    def semantic_head_logits(self, coarse: torch.Tensor, image_list: ImageList,
                             input_size: tuple[int, int]) -> torch.Tensor:
        """The semantic head's output (N×(1+S)×H×W, detectron2's classes) at the input
        size, from its coarse logits: detectron2's sem_seg postprocessing."""
        logits = F.interpolate(coarse, scale_factor=self.model.sem_seg_head.common_stride,
                               mode="bilinear", align_corners=False)
        return torch.stack([sem_seg_postprocess(one, size, *input_size)
                            for one, size in zip(logits, image_list.image_sizes, strict=True)])

    @torch.no_grad()
    def panoptic_logits(self, detections: list[Detections],
                        semantic: torch.Tensor) -> torch.Tensor:
        """The paper's S: detectron2's panoptic combination of the instances and the
        semantic head's stuff, one-hot over our classes (void = 0), as log-probabilities."""
        model, classes = self.model, self.classes
        out = semantic.new_full((len(detections), classes.num_classes, *semantic.shape[-2:]),
                                LOG_ZERO, dtype=torch.float32)
        for det, sem, plane in zip(detections, semantic, out, strict=True):
            found = Instances(det.image_size, scores=det.scores, pred_classes=det.labels - 1,
                              pred_masks=paste_masks_in_image(det.mask_probs[:, 0],
                                                              Boxes(det.boxes), det.image_size))
            segments, info = combine_semantic_and_instance_outputs(
                found, sem.argmax(0), model.combine_overlap_thresh,
                model.combine_stuff_area_thresh, model.combine_instances_score_thresh)
            label = torch.zeros(sem.shape[-2:], dtype=torch.long, device=sem.device)
            for segment in info:
                index = (classes.thing_index if segment["isthing"]
                         else (None, *classes.stuff_index))[segment["category_id"]]
                label[segments == segment["id"]] = index
            plane.scatter_(0, label[None], 0.0)
        return out

    # -- whole network --------------------------------------------------------------

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if self.training:
            return self.losses_and_detections(images, targets, detect=False)[0]
        return self.predict(images)

    def _instances(self, targets: list[dict], image_list: ImageList,
                   to_input: torch.Tensor) -> list[Instances]:
        """Ground truth at the network's size, as detectron2's data mapper resizes it."""
        instances = []
        for t, size, f in zip(targets, image_list.image_sizes, to_input.repeat(1, 2),
                              strict=True):
            masks = F.interpolate(t["masks"][None].float(), size=tuple(size), mode="nearest")[0]
            instances.append(Instances(tuple(size), gt_boxes=Boxes(t["boxes"].float() / f),
                                       gt_classes=t["labels"] - 1, gt_masks=BitMasks(masks > 0.5)))
        return instances

    def _semantic_targets(self, targets: list[dict], image_list: ImageList) -> torch.Tensor:
        maps = [F.interpolate(self.classes.to_detectron2(t["semantic"])[None, None].float(),
                              size=tuple(size), mode="nearest")[0, 0].long()
                for t, size in zip(targets, image_list.image_sizes, strict=True)]
        return ImageList.from_tensors(maps, self.model.backbone.size_divisibility,
                                      pad_value=IGNORE).tensor

    def losses_and_detections(self, images: torch.Tensor, targets: list[dict], detect: bool = True,
                              min_score: float | None = None):
        """As the torchvision backend's: (losses, detections, S as logits, features);
        detections and S only with ``detect``."""
        if targets is None:
            raise MaskoptError("training the segmenter needs targets")
        model = self.model
        image_list, to_input = self._image_list(images)
        size = tuple(images.shape[-2:])
        instances = self._instances(targets, image_list, to_input)
        with EventStorage():
            features = self._features(image_list, to_input)
            proposals, proposal_losses = model.proposal_generator(image_list, features, instances)
            _, detector_losses = model.roi_heads(image_list, features, proposals, instances)
            coarse = model.sem_seg_head.layers(features)
            semantic_losses = model.sem_seg_head.losses(
                coarse, self._semantic_targets(targets, image_list))
        losses = {**proposal_losses, **detector_losses, **semantic_losses}
        if self.grown_box_margin > 0:
            losses["loss_mask_grown_box"] = self.grown_box_mask_loss(
                features, targets, [size] * len(images))
        if not detect:
            return losses, None, None, features
        detections = self.detect(features, proposals, size, min_score)
        stuff = self.semantic_head_logits(coarse.detach(), image_list, size)
        return losses, detections, self.panoptic_logits(detections, stuff), features

    def predict(self, images: torch.Tensor, min_score: float | None = None) -> SegmenterOutput:
        """Detections (those scoring ``min_score`` or more, if given) and S."""
        model = self.model
        image_list, to_input = self._image_list(images)
        size = tuple(images.shape[-2:])
        features = self._features(image_list, to_input)
        proposals, _ = model.proposal_generator(image_list, features, None)
        stuff = self.semantic_head_logits(model.sem_seg_head.layers(features), image_list, size)
        detections = self.detect(features, proposals, size, min_score)
        return SegmenterOutput(detections, self.panoptic_logits(detections, stuff), features)

    def semantic_probs(self, images: torch.Tensor) -> torch.Tensor:
        """S as class probabilities (N×C×H×W): the panoptic output, one-hot."""
        return torch.softmax(self.predict(images).semantic_logits, 1)
