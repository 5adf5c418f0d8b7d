"""Fill the evaluation's rows (maskopt.evaluation.rows) on a split of test pairs.

One engine for the evaluate stage and the fixed-dilation sweep: per batch, each
segmenter's selected mask, each row's mask (grown by the row's d) and its fill. An
inpainter fills with the class probabilities of its own segmenter (the pretrained,
random-mask and fine-tuned inpainters the pretrained segmenter's). External inpainters
run once over every image and mask they need, after the project's own rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from maskopt.core.device import to_device
from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import rgb_to_tensor, tensor_to_rgb
from maskopt.core.io import read_rgb
from maskopt.data.pairs import batches
from maskopt.evaluation.external import export_pair, read_result, run_inpainter
from maskopt.evaluation.masks import selected_masks
from maskopt.evaluation.rows import OPENCV, Row
from maskopt.models.inference import (
    Networks,
    grow_mask,
    inpaint,
    inpaint_guides,
    opencv_inpaint,
)

BATCH = 8


@dataclass
class Sources:
    """segmenters: mask name → the networks whose segmenter selects it ("gt" is M_G).
    inpainters: inpainter name → (its networks, the mask name whose segmenter's classes
    guide it). fillers: inpainter name → a network that fills (images, masks) alone,
    with no class guide (EdgeConnect's published one)."""

    segmenters: dict[str, Networks]
    inpainters: dict[str, tuple[Networks, str]]
    device: torch.device | str = "cpu"
    fillers: dict[str, Callable] = field(default_factory=dict)

    @classmethod
    def of(cls, segmenters: dict[str, Networks], inpainters: dict[str, Networks],
           classes_from: dict[str, str], fillers: dict[str, Callable] | None = None
           ) -> Sources:
        """Each inpainter guided by ``classes_from[name]``'s classes, else by its own name's."""
        return cls(segmenters, {name: (nets, classes_from.get(name, name))
                                for name, nets in inpainters.items()},
                   next(iter(segmenters.values())).device, fillers or {})

    def names(self) -> set[str]:
        return {*self.segmenters, "gt", *self.inpainters, *self.fillers}


@dataclass
class Batch:
    """One batch's pairs, each segmenter's mask, whether it missed the person, each
    row's mask and each own row's fill."""

    pairs: dict
    masks: dict[str, torch.Tensor]
    missed: dict[str, torch.Tensor]
    row_masks: dict[str, torch.Tensor]
    fills: dict[str, torch.Tensor]


def selected(batch: dict, segmenters: dict[str, Networks]) -> tuple[dict, dict, dict]:
    """Each segmenter's binary selected mask of the batch, whether it found no segment,
    and the class probabilities of the same pass; "gt" is M_G."""
    images, gt = batch["image"], batch["mask"]
    masks, missed, classes = {}, {}, {}
    for name, nets in segmenters.items():
        soft, missed[name], semantic = selected_masks(nets.segmenter, images, gt,
                                                      nets.box_margin)
        masks[name] = (soft > 0.5).float()
        classes[name] = torch.softmax(semantic, 1)
    masks["gt"], missed["gt"] = gt, torch.zeros(len(images), dtype=torch.bool,
                                                device=images.device)
    return masks, missed, classes


def row_mask(row: Row, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    mask = masks[row.mask]
    return grow_mask(mask, row.grow) if row.grow else mask


def fill_rows(rows: list[Row], sources: Sources, dataset, export_to: Path | None = None,
              progress=None, limit: int | None = None) -> Iterator[Batch]:
    """Every own row's fill, batch by batch, on the first ``limit`` pairs (default: all);
    the masks of external rows are exported to ``export_to`` (see :func:`external_fills`)."""
    for pairs in batches(dataset, BATCH, limit):
        pairs = to_device(pairs, sources.device)
        images = pairs["image"]
        masks, missed, classes = selected(pairs, sources.segmenters)
        row_masks, fills, guides = {}, {}, {}
        for row in rows:
            mask = row_masks[row.name] = row_mask(row, masks)
            if row.external:
                _export(export_to, pairs["name"], images, mask, mask_key(row))
            elif row.inpainter in OPENCV:
                fills[row.name] = opencv_inpaint(images, mask, row.inpainter)
            elif row.inpainter in sources.fillers:
                fills[row.name] = sources.fillers[row.inpainter](images, mask)
            else:
                nets, guide = sources.inpainters[row.inpainter]
                # Table II's and III's random-mask rows share their edge and segmentation
                # inpainters (only the image one is fine-tuned): their guides are made once
                key = (id(nets.edge), id(nets.segmentation), row.mask, row.grow, guide)
                if key not in guides:
                    guides[key] = inpaint_guides(nets, images, mask, classes[guide])
                fills[row.name] = inpaint(nets, images, mask, classes[guide], guides[key])
        yield Batch(pairs, masks, missed, row_masks, fills)
        if progress is not None:
            progress.update(len(images))


def mask_key(row: Row) -> str:
    """The name an external row's mask is exported under (rows that fill the same mask
    share it)."""
    return f"{row.mask}{row.grow:+d}"


def _export(folder: Path | None, names: list[str], images, masks, key: str) -> None:
    if folder is None:
        raise ValueError("external rows need a folder to export to")
    for name, image, mask in zip(names, images, masks, strict=True):
        path = folder / "masks" / f"{name}__{key}.png"
        if not path.exists():
            export_pair(folder, f"{name}__{key}", tensor_to_rgb(image),
                        mask[0].cpu().numpy() > 0.5)


def run_external(rows: list[Row], commands: dict[str, str], exported: Path) -> dict[str, str]:
    """Run each external inpainter of ``rows`` (``commands``: name → command line) once
    over everything exported; {row: why it failed} for those whose command failed (left
    out, the other rows stay; :func:`external_fills` adds those whose results do not
    read back)."""
    failures, outcome = {}, {}
    for row in rows:
        if row.external and row.external not in outcome:
            try:
                run_inpainter(row.external, commands[row.external], exported,
                              exported / "results" / row.external)
                outcome[row.external] = None
            except MaskoptError as exc:
                outcome[row.external] = str(exc)
        if row.external and outcome[row.external] is not None:
            failures[row.name] = outcome[row.external]
    return failures


def external_fills(rows: list[Row], dataset, exported: Path,
                   failures: dict[str, str]) -> Iterator[tuple[dict, dict]]:
    """(pairs, {row: fills}) batch by batch for the external rows that ran: each result
    read back and composited with the exported input outside its mask. A result that
    is missing or unreadable adds its row to ``failures`` (with every row of the same
    inpainter), whose fills stop there: the caller drops what it scored of them."""
    for pairs in batches(dataset, BATCH):
        fills = {}
        for row in rows:
            if row.name in failures:
                continue
            key, results = mask_key(row), exported / "results" / row.external
            try:
                fills[row.name] = torch.stack([rgb_to_tensor(_read_fill(
                    row.external, exported, results, f"{name}__{key}"))
                    for name in pairs["name"]])
            except MaskoptError as exc:
                failures.update({other.name: str(exc) for other in rows
                                 if other.external == row.external})
                fills = {k: v for k, v in fills.items() if k not in failures}
        yield pairs, fills


def _read_fill(inpainter: str, exported: Path, results: Path, name: str) -> np.ndarray:
    rgb = read_rgb(exported / "images" / f"{name}.png")[0]
    hole = read_rgb(exported / "masks" / f"{name}.png")[0][..., 0] > 127
    return read_result(inpainter, results, name, rgb, hole)
