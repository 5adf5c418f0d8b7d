"""detectron2's PanopticFPN classes against ours, and its COCO checkpoint taken whole.

detectron2's COCO PanopticFPN numbers COCO's 80 thing categories 0..79 by category id
(background is the classifier's last row) and gives its semantic head detectron2's
panoptic convention: class 0 = every thing, 1..53 = the stuff categories by id, 255
ignored. Ours: semantic index 0 = unlabeled, 1..C-1 the categories (``taxonomy``);
thing labels 1..K. Kept apart from the network: this is about the published file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from maskopt.core.errors import MaskoptError

logger = logging.getLogger(__name__)

IGNORE = 255  # detectron2's SEM_SEG_HEAD.IGNORE_VALUE: our "unlabeled"
# Layers a PanopticFPN checkpoint has and a Mask R-CNN or a backbone alone has not.
PANOPTIC_PARTS = ("backbone.fpn_", "proposal_generator.", "roi_heads.mask_head.",
                  "sem_seg_head.predictor.")


@dataclass(frozen=True)
class SemanticClasses:
    """Our semantic indices in detectron2's panoptic convention and back."""

    thing_index: tuple[int, ...]  # thing label k (1..K) - 1 → our semantic index
    stuff_index: tuple[int, ...]  # detectron2 stuff class s (1..S) - 1 → our semantic index
    stuff_category_ids: tuple[int | None, ...]  # COCO id of each, None where not known
    num_classes: int  # ours, 0 = unlabeled included

    @classmethod
    def from_categories(cls, categories: list[dict] | None, num_things: int,
                        num_classes: int) -> SemanticClasses:
        """From the taxonomy's categories (``index``, ``id``, ``isthing``); without
        them, things are indices 1..K and stuff the rest."""
        if categories is None:
            things = list(range(1, num_things + 1))
            stuff = [(i, None) for i in range(num_things + 1, num_classes)]
        else:
            things = [c["index"] for c in sorted(categories, key=lambda c: c["id"])
                      if c.get("isthing")]
            stuff = [(c["index"], c["id"]) for c in sorted(categories, key=lambda c: c["id"])
                     if not c.get("isthing")]
        if len(things) != num_things:
            raise MaskoptError(f"the taxonomy has {len(things)} thing classes, the segmenter "
                               f"{num_things}")
        return cls(tuple(things), tuple(i for i, _ in stuff), tuple(c for _, c in stuff),
                   num_classes)

    @property
    def num_detectron2_classes(self) -> int:
        return 1 + len(self.stuff_index)

    def to_detectron2(self, semantic: torch.Tensor) -> torch.Tensor:
        """Our semantic map (class indices) as the detectron2 semantic head's target."""
        table = torch.full((self.num_classes,), IGNORE, dtype=torch.long)
        table[list(self.thing_index)] = 0
        table[list(self.stuff_index)] = torch.arange(1, len(self.stuff_index) + 1)
        return table.to(semantic.device)[semantic.long()]


def _contiguous_coco_ids(things: bool) -> dict[int, int]:
    """COCO category id → detectron2's contiguous index among things (0..79) or stuff
    (1..53: 0 is its "things" class)."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    ids = sorted(c["id"] for c in COCO_CATEGORIES if bool(c["isthing"]) == things)
    return {cid: i + (0 if things else 1) for i, cid in enumerate(ids)}


def _rows(path: str, layer: str, have: int, want: int, index: list[int]) -> list[int]:
    if have != want:
        raise MaskoptError(f"{path}: {layer} has {have} rows, COCO's PanopticFPN has {want}; "
                           "not detectron2's COCO PanopticFPN checkpoint")
    return index


def remap_coco_classes(state: dict, path: str, thing_category_ids: list[int],
                       classes: SemanticClasses) -> list[str]:
    """Keep, in place, the rows of the class-specific layers that belong to our classes:
    things by their COCO category id, stuff by theirs; returns the keys remapped."""
    things, stuff = _contiguous_coco_ids(things=True), _contiguous_coco_ids(things=False)
    missing = [cid for cid in (*thing_category_ids, *classes.stuff_category_ids)
               if cid not in things and cid not in stuff]
    if missing:
        raise MaskoptError(f"{path}: COCO PanopticFPN has no class for category ids {missing}")
    rows = [things[cid] for cid in thing_category_ids]
    semantic = [0, *(stuff[cid] for cid in classes.stuff_category_ids)]
    layers = {"roi_heads.box_predictor.cls_score": (len(things) + 1, [*rows, len(things)]),
              "roi_heads.box_predictor.bbox_pred": (4 * len(things),
                                                    [4 * r + i for r in rows for i in range(4)]),
              "roi_heads.mask_head.predictor": (len(things), rows),
              "sem_seg_head.predictor": (len(stuff) + 1, semantic)}
    remapped = []
    for layer, (want, index) in layers.items():
        for key in (f"{layer}.weight", f"{layer}.bias"):
            if key in state:
                state[key] = state[key][_rows(path, key, len(state[key]), want, index)]
                remapped.append(key)
    return remapped


def check_panoptic(state: dict, path: str) -> None:
    """Refuse, naming the file, a checkpoint that is not a whole PanopticFPN."""
    absent = [part for part in PANOPTIC_PARTS if not any(k.startswith(part) for k in state)]
    if absent:
        raise MaskoptError(f"{path}: not a PanopticFPN checkpoint (no {', '.join(absent)} "
                           "layers)")


def load_report(path: str, own_keys, incompatible, remapped: list[str]) -> dict:
    """What came from the file, by layer, and what did not."""
    left = sorted({*incompatible.missing_keys, *(k for k, *_ in incompatible.incorrect_shapes)})
    loaded = [k for k in own_keys if k not in left]
    layers = sorted({k.rsplit(".", 1)[0] for k in loaded})
    report = {"from_file": layers, "tensors_loaded": len(loaded), "remapped": remapped,
              "random": left, "unused": sorted(incompatible.unexpected_keys)}
    logger.info("%s: %d tensors of %d layers from the file (%d remapped to our classes), "
                "%d left random, %d unused", path, len(loaded), len(layers), len(remapped),
                len(left), len(report["unused"]))
    return report
