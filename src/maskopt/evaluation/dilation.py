"""Does learning the margin beat the best fixed dilation?

Object-removal tools grow a segmenter's mask by a fixed kernel; the paper learns the
margin instead. Here the pretrained segmenter's selected mask, grown by d px for each
d of ``evaluate.fixed_dilations``, is filled by each inpainter: the pretrained ones,
the joint model's own, OpenCV Telea and any external one. The best d per inpainter
(d*) is chosen on the validation pairs (train images held out of training, never a
test pair); on the test pairs the learned mask is then compared with the pretrained
mask grown by d*, filled by the same inpainter, as paired per-image PSNR differences.
With the same inpainter on both masks, the difference is the mask's share alone.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from maskopt.core.device import to_device
from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import rgb_to_tensor, tensor_to_rgb
from maskopt.core.io import read_rgb, write_png
from maskopt.data.pairs import batches
from maskopt.evaluation.external import export_pair, read_result, run_inpainter
from maskopt.evaluation.image_metrics import ALL, psnr
from maskopt.evaluation.masks import selected_masks
from maskopt.evaluation.statistics import paired_comparison
from maskopt.models.inference import Networks, grow_mask, inpaint, opencv_inpaint

BATCH = 8
LEARNED = "learned"  # the joint model's mask, beside the fixed dilations d0, d1, …
# the inpainters of the comparison (external ones are added by name)
OWN_INPAINTERS = ("pretrained", "joint", "telea")


def mask_key(d: int) -> str:
    return f"d{d}"


class PsnrTable:
    """Per-image PSNR of every (inpainter, mask) on one split, with each image's bucket."""

    def __init__(self):
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.buckets: list[str] = []

    def add(self, inpainter: str, mask: str, filled: torch.Tensor, target: torch.Tensor):
        self.values[inpainter][mask].extend(psnr(filled.float(), target.float()).tolist())

    def mean(self, inpainter: str, mask: str) -> float:
        return float(np.mean(self.values[inpainter][mask]))

    def best_dilation(self, inpainter: str, dilations: list[int]) -> int:
        """d with the highest mean PSNR (the smaller d on a tie)."""
        return max(dilations, key=lambda d: (self.mean(inpainter, mask_key(d)), -d))

    def in_bucket(self, inpainter: str, mask: str, bucket: str) -> list[float]:
        values = self.values[inpainter][mask]
        return [v for v, b in zip(values, self.buckets, strict=True) if bucket in (ALL, b)]


def sweep(pretrained: Networks, joint: Networks, dataset, dilations: list[int],
          external: dict[str, str], workdir: Path, progress=None
          ) -> tuple[PsnrTable, dict[str, str]]:
    """PSNR of each inpainter on the pretrained mask grown by each d, and on the learned
    mask, over ``dataset``; returns the table and {external name: why it failed}.

    Each inpainter fills with its own segmenter's semantic map (the pretrained
    inpainters the pretrained segmenter's, the joint inpainters the joint one's); only
    the mask changes along a row of the sweep."""
    table = PsnrTable()
    exported = []  # names of the images and masks exported for the external inpainters
    for batch in batches(dataset, BATCH):
        batch = to_device(batch, joint.device)
        images, target, gt = batch["image"], batch["target"], batch["mask"]
        pre_soft, _, pre_semantic = selected_masks(pretrained.segmenter, images, gt,
                                                   pretrained.box_margin)
        learned_soft, _, joint_semantic = selected_masks(joint.segmenter, images, gt,
                                                         joint.box_margin)
        masks = {mask_key(d): grow_mask((pre_soft > 0.5).float(), d) for d in dilations}
        masks[LEARNED] = (learned_soft > 0.5).float()
        fill = {"pretrained": (pretrained, torch.softmax(pre_semantic, 1)),
                "joint": (joint, torch.softmax(joint_semantic, 1))}
        for key, mask in masks.items():
            for inpainter, (nets, semantic) in fill.items():
                table.add(inpainter, key, inpaint(nets, images, mask, semantic), target)
            table.add("telea", key, opencv_inpaint(images, mask, "telea"), target)
            if external:
                for name, image, m in zip(batch["name"], images, mask, strict=True):
                    export_pair(workdir, f"{name}__{key}", tensor_to_rgb(image),
                                m[0].cpu().numpy() > 0.5)
                    exported.append(f"{name}__{key}")
        if external:  # the targets, to score the external fills as the other rows
            for name, t in zip(batch["name"], target, strict=True):
                write_png(workdir / "targets" / f"{name}.png", tensor_to_rgb(t))
        table.buckets += list(batch["bucket"])
        if progress is not None:
            progress.update(len(images))
    failures = {}
    for inpainter, command in external.items():
        try:
            _add_external(table, inpainter, command, workdir, exported)
        except MaskoptError as exc:  # reported and left out; the other rows stay
            failures[inpainter] = str(exc)
    return table, failures


def _add_external(table: PsnrTable, inpainter: str, command: str, workdir: Path,
                  exported: list[str]) -> None:
    """Run an external inpainter once on every exported image and mask; add its PSNRs."""
    output = workdir / "results" / inpainter
    run_inpainter(inpainter, command, workdir, output)
    scored = defaultdict(list)
    for name in exported:
        rgb = read_rgb(workdir / "images" / f"{name}.png")[0]
        hole = read_rgb(workdir / "masks" / f"{name}.png")[0][..., 0] > 127
        filled = read_result(inpainter, output, name, rgb, hole)
        pair, key = name.rsplit("__", 1)
        target = read_rgb(workdir / "targets" / f"{pair}.png")[0]
        scored[key].append((rgb_to_tensor(filled), rgb_to_tensor(target)))
    for key, pairs in scored.items():  # in the order of the dataset, as the other rows
        filled, target = (torch.stack(x) for x in zip(*pairs, strict=True))
        table.add(inpainter, key, filled, target)


def best_dilations(validation: PsnrTable, dilations: list[int]) -> dict[str, int]:
    """d* of each inpainter, chosen on the validation pairs."""
    return {inpainter: validation.best_dilation(inpainter, dilations)
            for inpainter in validation.values}


def compare_with_best_dilation(test: PsnrTable, best: dict[str, int],
                               buckets: list[str]) -> dict[str, dict[str, dict]]:
    """{inpainter: {bucket: learned mask − pretrained mask grown by d*}} on the test
    pairs, each a paired comparison (mean difference, wins, 95 % bootstrap interval)."""
    out = {}
    for inpainter, d in best.items():
        if inpainter not in test.values:
            continue
        out[inpainter] = {}
        for bucket in [ALL, *buckets]:
            learned = test.in_bucket(inpainter, LEARNED, bucket)
            if learned:
                fixed = test.in_bucket(inpainter, mask_key(d), bucket)
                out[inpainter][bucket] = paired_comparison(learned, fixed)
    return out


def inpainters_share(test: PsnrTable, best: dict[str, int]) -> dict:
    """The joint model (its mask, its inpainters) against the practitioner's baseline
    (pretrained mask + d*, pretrained inpainters), and the part of that difference the
    mask explains: the same two masks, both filled by the joint inpainters."""
    baseline = test.values["pretrained"][mask_key(best["pretrained"])]
    joint_on_fixed = test.values["joint"][mask_key(best["joint"])]
    learned = test.values["joint"][LEARNED]
    return {"total": paired_comparison(learned, baseline),
            "mask": paired_comparison(learned, joint_on_fixed),
            "inpainters": paired_comparison(joint_on_fixed, baseline)}


def dilation_report(validation: PsnrTable, test: PsnrTable, dilations: list[int],
                    buckets: list[str], failures: dict[str, str]) -> dict:
    """Everything reports/fixed_dilation.{json,md} and the plot show."""
    best = best_dilations(validation, dilations)
    curves = {split: {inpainter: {**{str(d): table.mean(inpainter, mask_key(d))
                                     for d in dilations},
                                  LEARNED: table.mean(inpainter, LEARNED)}
                      for inpainter in table.values}
              for split, table in (("validation", validation), ("test", test))}
    return {"dilations": dilations, "best": best, "psnr": curves,
            "validation_pairs": len(validation.buckets), "test_pairs": len(test.buckets),
            "learned_vs_best": compare_with_best_dilation(test, best, buckets),
            "shares": inpainters_share(test, best), "failures": failures}
