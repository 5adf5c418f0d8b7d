"""The evaluate stage's scoring: every row of ``maskopt.evaluation.rows`` on the test
pairs, filled by ``maskopt.evaluation.engine``; image metrics per mask-ratio bucket,
mask metrics, each row's PSNR per pair, and the grids.

"Pretrained" networks are those before joint training (the paper's starting point).
When a segmenter finds no overlapping segment, a row on its mask scores an empty mask
(the input unchanged) and counts a fallback.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from maskopt.evaluation.engine import (
    BATCH,
    Batch,
    Sources,
    external_fills,
    fill_rows,
    run_external,
)
from maskopt.evaluation.image_metrics import ALL, BucketMetrics, SharedNetworks
from maskopt.evaluation.masks import mask_metrics, mean_metrics
from maskopt.evaluation.rows import FIGURES, ROWS, Row, comparisons, pixels_here, table_v_rows
from maskopt.evaluation.statistics import paired_comparison


def compare_rows(per_image: dict[str, list[float]], image_size: int) -> list[dict]:
    """The paired comparisons whose rows were evaluated."""
    return [{"a": a, "b": b, "claim": claim, **paired_comparison(per_image[a], per_image[b])}
            for a, b, claim in comparisons(image_size) if a in per_image and b in per_image]


@dataclass
class RowResults:
    images: BucketMetrics
    masks: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict:
        out = self.images.result()
        for bucket, rows in self.masks.items():
            out.setdefault(bucket, {}).update({f"mask_{k}": v
                                               for k, v in mean_metrics(rows).items()})
        return out

    def per_image(self, metric: str) -> list[float]:
        return list(self.images.values[ALL][metric])


# kept per image: the paired comparisons' metrics (LPIPS where its network was had)
PER_IMAGE = ("psnr", "ssim", "lpips")


def _score(results: dict, batch: Batch, mask_of: dict[str, str]) -> None:
    """Add the batch's image metrics (own rows) and mask metrics (every row; ``mask_of``:
    row → the mask it fills, whose segmenter's misses are its fallbacks)."""
    target, gt, buckets = batch.pairs["target"], batch.pairs["mask"], batch.pairs["bucket"]
    for name, filled in batch.fills.items():
        results[name].images.update(filled, target, buckets)
    for name, mask in batch.row_masks.items():
        row_missed = batch.missed[mask_of[name]]
        for m, g, miss, bucket in zip(mask, gt, row_missed, buckets, strict=True):
            row = {**mask_metrics(m[0].cpu().numpy() > 0.5, g[0].cpu().numpy() > 0.5),
                   "fallback_rate": float(miss)}
            results[name].masks[bucket].append(row)
            results[name].masks[ALL].append(row)


@dataclass
class Scored:
    """What scoring rows on a split gives: {row: {bucket: metrics}}, {metric: {row: per
    image, in dataset order}}, the first images of each row and mask for the figures,
    and {row: why it failed} for the external rows left out."""

    table: dict
    per_image: dict
    drawn: dict
    failures: dict


def score_rows(rows: list[Row], sources: Sources, dataset, shared: SharedNetworks,
               grid_pairs: int = 8, progress=None, external: dict[str, str] | None = None,
               workdir: Path | None = None) -> Scored:
    """Every row of ``rows`` on the whole split, keeping the first ``grid_pairs`` images
    of each for the figures. External rows run ``external[name]`` in ``workdir``; one
    that fails is left out of the results."""
    results = {row.name: RowResults(BucketMetrics(shared)) for row in rows}
    drawn: dict[str, list] = defaultdict(list)
    for batch in fill_rows(rows, sources, dataset, workdir, progress):
        _score(results, batch, {row.name: row.mask for row in rows})
        _draw(drawn, batch_images(batch), grid_pairs)
    outside = [row for row in rows if row.external]
    failures = run_external(outside, external or {}, workdir) if outside else {}
    ran = [row for row in outside if row.name not in failures]
    for pairs, fills in external_fills(ran, dataset, workdir, failures):
        for name, filled in fills.items():
            results[name].images.update(filled, pairs["target"], pairs["bucket"])
        _draw(drawn, fills, grid_pairs)
    kept = [row for row in rows if row.name not in failures]
    table = {row.name: results[row.name].summary() for row in kept}
    per_image = {metric: {row.name: results[row.name].per_image(metric) for row in kept}
                 for metric in PER_IMAGE if metric != "lpips" or shared.lpips is not None}
    return Scored(table, per_image, drawn, failures)


def evaluate_pairs(rows: list[Row], sources: Sources, dataset, shared: SharedNetworks,
                   grid_pairs: int = 8, progress=None, external: dict[str, str] | None = None,
                   workdir: Path | None = None) -> tuple[dict, dict, dict, dict]:
    """Return ({row: {bucket: metrics}}, {metric: {row: per image, in dataset order}},
    {figure: {column: images}}, {row: why it failed}) over the whole test split (see
    :func:`score_rows`). The figures are :data:`FIGURES`, drawn from the first
    ``grid_pairs`` pairs (Fig. 1: the first)."""
    scored = score_rows(rows, sources, dataset, shared, grid_pairs, progress, external,
                        workdir)
    kept = [row for row in rows if row.name not in scored.failures]
    return (scored.table, scored.per_image, figure_columns(kept, scored.drawn),
            scored.failures)


def draw_rows(rows: list[Row], sources: Sources, dataset, grid_pairs: int) -> dict[str, list]:
    """The first ``grid_pairs`` images of each own row and mask, for the figures of rows
    scored elsewhere; filled in whole batches, so they are the images a run over every
    pair makes."""
    whole_batches = -(-grid_pairs // BATCH) * BATCH
    drawn: dict[str, list] = defaultdict(list)
    for batch in fill_rows(rows, sources, dataset, limit=whole_batches):
        _draw(drawn, batch_images(batch), grid_pairs)
    return drawn


def batch_images(batch: Batch) -> dict[str, torch.Tensor]:
    """A batch's images by figure key: input, target, each mask and each fill."""
    return {"input": batch.pairs["image"], "target": batch.pairs["target"],
            **{f"mask {k}": v for k, v in batch.masks.items()},
            **{f"mask {k}": v for k, v in batch.row_masks.items()}, **batch.fills}


def _draw(drawn: dict[str, list], images: dict[str, torch.Tensor], limit: int) -> None:
    """Keep the first ``limit`` images of each key, for the grids."""
    for key, batch in images.items():
        take = limit - len(drawn[key])
        if take > 0:
            drawn[key].extend(batch[:take].cpu())


GRID_FIRST_COLUMN = "input I"


def figure_columns(rows: list[Row], drawn: dict[str, list]) -> dict[str, dict[str, list]]:
    """Each figure of :data:`FIGURES` as {column label: images}.

    pairs: the masks and the rows with a ``grid`` column, labelled so (short forms of
    their descriptions). table_v: Fig. 4 of the paper, Table V's rows side by side,
    labelled with the row names, each learned mask before its fill. figure_1: Fig. 1
    of the paper, the GT mask eroded by the paper's 2 px (at 256 px, scaled to the
    pairs' side), exact and grown by as much, with the pretrained inpainters' fills
    (those that were evaluated), on the first pair."""
    first, last = {GRID_FIRST_COLUMN: drawn["input"]}, {"ground truth I_G": drawn["target"]}
    pairs = {**first, "pretrained mask": drawn["mask pretrained"],
             "joint mask": drawn["mask joint"],
             **{row.grid: drawn[row.name] for row in rows if row.grid}, **last}
    table_v = {**first, "pretrained mask": drawn["mask pretrained"]}
    for row in table_v_rows(rows):  # the joint models' own masks before their fills
        if row.mask != "pretrained":
            table_v[f"{row.mask} mask"] = drawn[f"mask {row.mask}"]
        table_v[row.name] = drawn[row.name]
    table_v.update(last)
    names = {row.name for row in rows}
    # Fig. 1's ±2 px at 256 px, in the pairs' pixels; nothing drawn (no grid pairs): none
    step = pixels_here(2, drawn["input"][0].shape[-1]) if drawn["input"] else None
    shown = [] if step is None else [f"gt_d{d}" for d in (-step, 0, step) if f"gt_d{d}" in names]
    figure_1 = {**first, **{f"mask {name}": drawn[f"mask {name}"] for name in shown},
                **{name: drawn[name] for name in shown}, **last}
    figures = {"pairs": pairs, "table_v": table_v, "figure_1": figure_1}
    return {name: {k: v[:1] if name == "figure_1" else v for k, v in figures[name].items()}
            for name in FIGURES}


def headline_metrics(table: dict) -> dict:
    """The ~10 numbers that answer "did this run do better?" (reports/metrics.json, what
    `dvc metrics diff` and `dvc exp show` display): PSNR/SSIM over all test pairs of the
    joint model, the paper's starting point and Telea on the same (pretrained) mask;
    the joint mask's coverage and added area beside the pretrained mask's coverage; the
    share of test pairs where no segment was found."""
    overall = {row.name: table[row.name]["all"] for row in ROWS if row.headline}
    joint = overall["joint"]
    return {
        "psnr": {row: round(float(m["psnr"]), 4) for row, m in overall.items()},
        "ssim": {row: round(float(m["ssim"]), 5) for row, m in overall.items()},
        "mask": {"coverage": round(float(joint["mask_coverage"]), 5),
                 "pretrained_coverage": round(float(overall["starting_point"]["mask_coverage"]), 5),
                 "added_area": round(float(joint["mask_added_area"]), 5),
                 "fallback_rate": round(float(joint["mask_fallback_rate"]), 5)},
    }


def flat_metrics(table: dict, unavailable: dict[str, str]) -> dict:
    """Nested {row: {metric: {bucket: value}}}: every number of the evaluation, for
    reports/evaluation.json and MLflow (keys like ``joint.psnr.0-10`` once flattened)."""
    out: dict = {}
    for row, buckets in table.items():
        for bucket, metrics in buckets.items():
            for metric, value in metrics.items():
                if metric == "count" and row != "joint":  # the same for every row
                    continue
                if isinstance(value, float) and not np.isfinite(value):
                    continue
                out.setdefault(row, {}).setdefault(metric, {})[bucket] = round(float(value), 5)
    if unavailable:
        out["unavailable"] = dict(unavailable)
    return out
