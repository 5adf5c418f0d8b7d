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

from maskopt.evaluation.engine import Sources, external_fills, fill_rows, run_external
from maskopt.evaluation.image_metrics import ALL, psnr
from maskopt.evaluation.rows import EXTERNAL, Row
from maskopt.evaluation.statistics import paired_comparison
from maskopt.models.inference import Networks

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

    def curve(self, inpainter: str) -> dict[str, float]:
        """Mean PSNR per mask it was scored on: {"0": d = 0, …, "learned": …}."""
        return {key.removeprefix("d"): self.mean(inpainter, key)
                for key in self.values[inpainter]}

    def best_dilation(self, inpainter: str, dilations: list[int]) -> int:
        """d with the highest mean PSNR (the smaller d on a tie)."""
        return max(dilations, key=lambda d: (self.mean(inpainter, mask_key(d)), -d))

    def in_bucket(self, inpainter: str, mask: str, bucket: str) -> list[float]:
        values = self.values[inpainter][mask]
        return [v for v, b in zip(values, self.buckets, strict=True) if bucket in (ALL, b)]


def sweep_rows(dilations: dict[str, list[int]], external: list[str]
               ) -> dict[str, tuple[Row, str, str]]:
    """The sweep as evaluation rows: {row: (row, inpainter, mask key)}, each inpainter
    of ``dilations`` (its own names and those of ``external``) on the pretrained mask
    grown by each of its d, and on the learned mask."""
    rows = {}
    for name, ds in dilations.items():
        inpainter = EXTERNAL + name if name in external else name
        for mask, d, key in [("pretrained", d, mask_key(d)) for d in ds] + [("joint", 0, LEARNED)]:
            rows[f"{name}@{key}"] = (Row(f"{name}@{key}", mask, inpainter, name, grow=d), name,
                                     key)
    return rows


def sweep(pretrained: Networks, joint: Networks, dataset, dilations: dict[str, list[int]],
          external: dict[str, str], workdir: Path, progress=None
          ) -> tuple[PsnrTable, dict[str, str]]:
    """PSNR of each inpainter of ``dilations`` (own or external, by name) on the
    pretrained mask grown by each of its d, and on the learned mask, over ``dataset``;
    returns the table and {external name: why it failed}.

    Each inpainter fills with its own segmenter's semantic map (the pretrained
    inpainters the pretrained segmenter's, the joint inpainters the joint one's); only
    the mask changes along a row of the sweep."""
    table = PsnrTable()
    rows = sweep_rows(dilations, list(external))
    both = {"pretrained": pretrained, "joint": joint}
    for batch in fill_rows([row for row, _, _ in rows.values()], Sources.of(both, both, {}),
                           dataset, workdir, progress):
        for name, filled in batch.fills.items():
            _, inpainter, key = rows[name]
            table.add(inpainter, key, filled, batch.pairs["target"])
        table.buckets += list(batch.pairs["bucket"])
    outside = [row for row, _, _ in rows.values() if row.external]
    failed = run_external(outside, external, workdir) if outside else {}
    ran = [row for row in outside if row.name not in failed]
    for pairs, fills in external_fills(ran, dataset, workdir, failed):
        for name, filled in fills.items():
            _, inpainter, key = rows[name]
            table.add(inpainter, key, filled, pairs["target"])
    failures = {rows[name][1]: why for name, why in failed.items()}
    for inpainter in failures:  # what was scored before its results stopped reading back
        table.values.pop(inpainter, None)
    return table, failures


def every_inpainter(dilations: list[int], external: list[str]) -> dict[str, list[int]]:
    """Every inpainter of the sweep (own, then external) with every d."""
    return {name: list(dilations) for name in [*OWN_INPAINTERS, *external]}


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
    """Everything reports/fixed_dilation.{json,md} and the plot show. The validation
    curves have every d, the test ones d* and the learned mask."""
    best = best_dilations(validation, dilations)
    curves = {split: {inpainter: table.curve(inpainter) for inpainter in table.values}
              for split, table in (("validation", validation), ("test", test))}
    return {"dilations": dilations, "best": best, "psnr": curves,
            "validation_pairs": len(validation.buckets), "test_pairs": len(test.buckets),
            "learned_vs_best": compare_with_best_dilation(test, best, buckets),
            "shares": inpainters_share(test, best), "failures": failures}
