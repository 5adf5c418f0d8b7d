"""Start the segmenter from torchvision's COCO Mask R-CNN R50-FPN weights.

Kept apart from the network definition: only the ``coco`` profile needs it, and the
class surgery below is about the published file, not about PanopticFPN.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from torch import nn

from maskopt.core.errors import MaskoptError

logger = logging.getLogger(__name__)

# Layers of the published Mask R-CNN with one row (or 4 box rows) per COCO category.
CLASS_SPECIFIC = ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred",
                  "roi_heads.mask_predictor.mask_fcn_logits")
# Ours alone: may start untrained (the semantic branch is not part of Mask R-CNN; the
# normalisation constants are buffers we set).
NEW_IN_PANOPTIC = ("semantic_head.", "mean", "std")


def download_coco_maskrcnn() -> dict:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    try:
        return MaskRCNN_ResNet50_FPN_Weights.COCO_V1.get_state_dict(progress=True)
    except Exception as exc:  # noqa: BLE001
        raise MaskoptError(f"cannot load COCO Mask R-CNN weights ({exc}); connect to the "
                           "internet once, or set segmenter.weights: imagenet or none") from exc


def load_coco_maskrcnn(model: nn.Module, thing_category_ids: list[int],
                       state: dict | None = None) -> dict:
    """Start from torchvision's COCO Mask R-CNN R50-FPN, all of it.

    The state dict goes through ``load_state_dict``, so torchvision's own hooks rename
    the published file's older key layout (FPN blocks, RPN conv, mask-head convs). The
    class-specific rows are taken from torchvision's 91-entry COCO index (which is the
    COCO category id) for each of our thing classes. Returns a report of what was
    loaded, remapped and left random; refuses a start where anything beyond the class
    layers and the new semantic head would be left random. ``state`` replaces the
    download (tests, a local copy).
    """
    state = download_coco_maskrcnn() if state is None else state
    metadata = getattr(state, "_metadata", None)
    remapped = OrderedDict(state)
    if metadata is not None:
        remapped._metadata = metadata  # the version info the renaming hooks read
    rows = [0, *thing_category_ids]  # row 0 = background
    names = []
    for prefix in CLASS_SPECIFIC:
        per_class = 4 if prefix.endswith("bbox_pred") else 1
        index = [per_class * r + i for r in rows for i in range(per_class)]
        for suffix in ("weight", "bias"):
            key = f"{prefix}.{suffix}"
            if key in remapped:
                if max(index) >= len(remapped[key]):
                    raise MaskoptError(f"COCO weights: {key} has {len(remapped[key])} rows, "
                                       f"category ids up to {max(rows)} were asked for")
                remapped[key] = remapped[key][index]
                names.append(key)
    try:
        result = model.load_state_dict(remapped, strict=False)
    except RuntimeError as exc:
        raise MaskoptError(f"COCO weights do not fit the segmenter: {exc}") from exc
    random = sorted(result.missing_keys)
    unexpected = [k for k in random if not k.startswith(NEW_IN_PANOPTIC)]
    if unexpected:
        raise MaskoptError(f"COCO weights left {len(unexpected)} tensors random that should "
                           f"have been loaded: {', '.join(unexpected[:5])}")
    report = {"loaded": len(model.state_dict()) - len(random), "remapped": names,
              "random": random, "unused": sorted(result.unexpected_keys)}
    logger.info("COCO Mask R-CNN: %d tensors loaded, %d class layers remapped to %d classes, "
                "%d left random (semantic head), %d unused", report["loaded"], len(names),
                len(rows) - 1, len(random), len(report["unused"]))
    return report


