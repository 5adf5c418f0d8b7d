"""The evaluate stage: every row of the comparison on the synthesized test pairs.

Each row is one (mask, inpainter) combination; ``ROWS`` says which, in words that
tables.md and the grids repeat. "Pretrained" networks are those before joint
training (the paper's starting point); masks of a segmenter are the segment that
overlaps M_G most (the paper's protocol). When a segmenter finds no overlapping
segment, the row scores an empty mask (the input unchanged) and counts a fallback.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskopt.core.device import to_device
from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import rgb_to_tensor, tensor_to_rgb
from maskopt.data.pairs import batches
from maskopt.evaluation.external import export_pair, read_result, run_inpainter
from maskopt.evaluation.image_metrics import ALL, BucketMetrics, SharedNetworks
from maskopt.evaluation.masks import mask_metrics, mean_metrics, selected_masks
from maskopt.evaluation.row_names import (
    FIGURES,
    external_name,
    external_row,
    finetuned_pairs,
    finetuned_row,
)
from maskopt.evaluation.statistics import paired_comparison
from maskopt.models.inference import Networks, grow_mask, inpaint, opencv_inpaint

BATCH = 8

# row → (mask, inpainter). Masks: "joint" = the jointly trained segmenter's,
# "pretrained" = the pretrained segmenter's, "gt" = M_G (grown by d px in Table I).
ROWS = {
    "joint": ("joint", "joint"),
    "starting_point": ("pretrained", "pretrained"),
    "joint_inpainters_pretrained_mask": ("pretrained", "joint"),
    "telea_pretrained_mask": ("pretrained", "telea"),
    "ns_pretrained_mask": ("pretrained", "ns"),
    "telea_joint_mask": ("joint", "telea"),
    "ns_joint_mask": ("joint", "ns"),
    "telea_gt_mask": ("gt", "telea"),
    # the paper's baselines, inpainters trained on random masks (Table II's first column
    # on the GT mask; Table V's "EdgeC" on the pretrained segmenter's mask)
    "random_inpainters_gt_mask": ("gt", "random"),
    "random_inpainters_pretrained_mask": ("pretrained", "random"),
    # the paper's "w/o MEL": joint training without the mask expansion loss (Table V)
    "without_mel": ("without_mel", "without_mel"),
}


# (row A, row B, the claim "A beats B" in words): paired per-image PSNR comparisons.
COMPARISONS = [
    ("joint", "starting_point", "joint beats the paper's starting point"),
    ("joint", "telea_pretrained_mask", "joint beats OpenCV Telea on the pretrained mask"),
    ("joint", "telea_joint_mask", "joint inpainters beat OpenCV Telea on the same mask"),
    ("gt_d0", "telea_gt_mask", "pretrained inpainters beat OpenCV Telea on the GT mask"),
    ("gt_d0", "gt_d-2", "the exact GT mask beats the GT mask eroded by 2 px"),
    ("gt_d0", "random_inpainters_gt_mask",
     "inpainters trained on object masks beat those trained on random masks (GT mask)"),
    ("joint", "random_inpainters_pretrained_mask",
     "joint beats random-mask inpainters on the pretrained mask (EdgeC)"),
    ("joint", "without_mel", "joint beats joint training without the mask expansion loss"),
]


def compare_rows(per_image: dict[str, list[float]]) -> list[dict]:
    """The paired comparisons whose rows were evaluated."""
    return [{"a": a, "b": b, "claim": claim, **paired_comparison(per_image[a], per_image[b])}
            for a, b, claim in COMPARISONS if a in per_image and b in per_image]


def row_names(dilations: list[int], with_random: bool = True,
              with_without_mel: bool = True) -> list[str]:
    rows = [r for r in ROWS if (with_random or ROWS[r][1] != "random")
            and (with_without_mel or ROWS[r][1] != "without_mel")]
    return [*rows, *(f"gt_d{d}" for d in dilations)]


def describe_row(row: str, mask_expansion: bool = True) -> str:
    """What a row is, in the words tables.md and the grids use."""
    joint = "joint + MEL" if mask_expansion else "joint w/o MEL"
    masks = {"joint": f"{joint} segmenter's mask", "pretrained": "pretrained segmenter's mask",
             "gt": "ground-truth mask"}
    inpainters = {"joint": f"{joint} inpainters", "pretrained": "pretrained inpainters",
                  "telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes",
                  "random": "inpainters trained on random masks"}
    if row == "joint":
        return f"{joint} (its segmenter's mask, its inpainters)"
    if row == "without_mel":
        return "joint w/o MEL (its segmenter's mask, its inpainters; Table V's ablation)"
    if row == "starting_point":
        return "paper's starting point (pretrained segmenter's mask, pretrained inpainters)"
    if finetuned_pairs(row) is not None:
        return f"inpainters trained on random masks, the image inpainter fine-tuned on " \
               f"{finetuned_pairs(row)} object-mask pairs, ground-truth mask (Table III)"
    if external_name(row) is not None:
        return f"external inpainter {external_name(row)}, pretrained segmenter's mask"
    if row.startswith("gt_d"):
        d = int(row[4:])
        return f"pretrained inpainters, ground-truth mask {'grown' if d >= 0 else 'eroded'} " \
               f"by {abs(d)} px (Table I)"
    mask, inpainter = ROWS[row]
    return f"{inpainters[inpainter]}, {masks[mask]}"


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

    def per_image_psnr(self) -> list[float]:
        return list(self.images.values[ALL]["psnr"])


def _selected(batch: dict, joint: Networks, pretrained: Networks,
              without_mel: Networks | None) -> tuple[dict, dict, dict]:
    """Each segmenter's selected mask of the batch (binary), whether it missed the person,
    and its networks with the class probabilities its inpainters are guided by."""
    images, gt = batch["image"], batch["mask"]
    soft, joint_missed, semantic = selected_masks(joint.segmenter, images, gt,
                                                  joint.box_margin)
    pre_soft, pre_missed, pre_semantic = selected_masks(pretrained.segmenter, images, gt,
                                                        pretrained.box_margin)
    masks = {"joint": (soft > 0.5).float(), "pretrained": (pre_soft > 0.5).float()}
    missed = {"joint": joint_missed, "pretrained": pre_missed,
              "gt": torch.zeros_like(joint_missed)}
    nets = {"joint": (joint, torch.softmax(semantic, 1)),
            "pretrained": (pretrained, torch.softmax(pre_semantic, 1))}
    if without_mel is not None:
        no_mel_soft, missed["without_mel"], no_mel_semantic = selected_masks(
            without_mel.segmenter, images, gt, without_mel.box_margin)
        masks["without_mel"] = (no_mel_soft > 0.5).float()
        nets["without_mel"] = (without_mel, torch.softmax(no_mel_semantic, 1))
    return masks, missed, nets


def _fill_rows(results: dict, images, gt, masks: dict, missed: dict, nets: dict,
               finetuned: dict, dilations: list[int], pretrained: Networks):
    """Every row's fill of the batch, and the mask (and misses) it filled."""
    outputs, used = {}, {}
    for row, (mask_name, inpainter) in ROWS.items():
        if row not in results:
            continue
        mask = gt if mask_name == "gt" else masks[mask_name]
        if inpainter in ("telea", "ns"):
            outputs[row] = opencv_inpaint(images, mask, inpainter)
        else:
            net, semantic_probs = nets[inpainter]
            outputs[row] = inpaint(net, images, mask, semantic_probs)
        used[row] = (mask, missed[mask_name])
    for n, nets_n in finetuned.items():
        outputs[finetuned_row(n)] = inpaint(nets_n, images, gt, nets["pretrained"][1])
        used[finetuned_row(n)] = (gt, missed["gt"])
    for d in dilations:
        mask = grow_mask(gt, d)
        outputs[f"gt_d{d}"] = inpaint(pretrained, images, mask, nets["pretrained"][1])
        used[f"gt_d{d}"] = (mask, missed["gt"])
    return outputs, used


def _score(results: dict, outputs: dict, used: dict, target, gt, buckets) -> None:
    """Add the batch's image metrics and mask metrics to each row's results."""
    for name, result in outputs.items():
        results[name].images.update(result, target, buckets)
        mask, row_missed = used[name]
        for m, g, miss, bucket in zip(mask, gt, row_missed, buckets, strict=True):
            row = {**mask_metrics(m[0].cpu().numpy() > 0.5, g[0].cpu().numpy() > 0.5),
                   "fallback_rate": float(miss)}
            results[name].masks[bucket].append(row)
            results[name].masks[ALL].append(row)


def evaluate_pairs(joint: Networks, pretrained: Networks, dataset, dilations: list[int],
                   shared: SharedNetworks, grid_pairs: int = 8, progress=None,
                   random: Networks | None = None,
                   export_to: Path | None = None,
                   finetuned: dict[int, Networks] | None = None,
                   without_mel: Networks | None = None) -> tuple[dict, dict, dict]:
    """Return ({row: {bucket: metrics}}, {row: per-image PSNR in dataset order},
    {figure: {column: images}}) over the whole test split; the figures are
    :data:`FIGURES`, drawn from the first ``grid_pairs`` pairs (Fig. 1: the first).
    ``random``: the inpainters trained on random masks (their rows are left out
    without them). ``export_to``: a folder that gets every test image with the
    pretrained segmenter's mask, for external inpainters.
    ``finetuned``: N → the random-mask inpainters with the image inpainter fine-tuned
    on N object pairs (Table III), run on the GT masks. ``without_mel``: the joint
    model trained without the mask expansion loss."""
    device = joint.device
    finetuned = finetuned or {}
    names = [*row_names(dilations, random is not None, without_mel is not None),
             *map(finetuned_row, finetuned)]
    results = {name: RowResults(BucketMetrics(shared)) for name in names}
    grids = {figure: defaultdict(list) for figure in FIGURES}
    for batch in batches(dataset, BATCH):
        batch = to_device(batch, device)
        images, target, gt = batch["image"], batch["target"], batch["mask"]
        masks, missed, nets = _selected(batch, joint, pretrained, without_mel)
        if export_to is not None:
            for name, image, mask in zip(batch["name"], images, masks["pretrained"],
                                         strict=True):
                export_pair(export_to, name, tensor_to_rgb(image), mask[0].cpu().numpy() > 0.5)
        if random is not None:  # the pretrained segmenter's classes, as the baselines get
            nets["random"] = (random, nets["pretrained"][1])
        outputs, used = _fill_rows(results, images, gt, masks, missed, nets, finetuned,
                                   dilations, pretrained)
        _score(results, outputs, used, target, gt, batch["bucket"])
        for figure, wanted in (("pairs", grid_pairs), ("table_v", grid_pairs), ("figure_1", 1)):
            take = wanted - len(grids[figure][GRID_FIRST_COLUMN])
            if take > 0:
                columns = figure_columns(figure, images, target, gt, masks, outputs, dilations)
                for key, value in columns.items():
                    grids[figure][key].extend(value[:take].cpu())
        if progress is not None:
            progress.update(len(images))
    table = {name: r.summary() for name, r in results.items()}
    per_image = {name: r.per_image_psnr() for name, r in results.items()}
    return table, per_image, {figure: dict(grid) for figure, grid in grids.items()}


def evaluate_external(commands: dict[str, str], exported: Path, dataset,
                      shared: SharedNetworks) -> tuple[dict, dict, dict[str, str]]:
    """Run each external inpainter on the images ``evaluate_pairs`` exported and score
    it like the other rows; returns (table rows, per-image PSNR, {name: why it failed}).
    A failing inpainter is reported and left out; the other rows are kept."""
    table, per_image, failures = {}, {}, {}
    for name, command in commands.items():
        output = exported / "results" / name
        try:
            run_inpainter(name, command, exported, output)
            result = RowResults(BucketMetrics(shared))
            for batch in batches(dataset, BATCH):
                filled = external_fills(name, exported, batch["name"])
                result.images.update(filled, batch["target"], batch["bucket"])
        except MaskoptError as exc:
            failures[name] = str(exc)
            continue
        table[external_row(name)] = result.summary()
        per_image[external_row(name)] = result.per_image_psnr()
    return table, per_image, failures


def external_fills(name: str, exported: Path, image_names: list[str]) -> torch.Tensor:
    """An external inpainter's results for ``image_names`` (N×3×H×W), known pixels kept."""
    filled = []
    for image_name in image_names:
        rgb = np.asarray(Image.open(exported / "images" / f"{image_name}.png"))
        hole = np.asarray(Image.open(exported / "masks" / f"{image_name}.png")) > 127
        result = read_result(name, exported / "results" / name, image_name, rgb, hole)
        filled.append(rgb_to_tensor(result))
    return torch.stack(filled)


GRID_FIRST_COLUMN = "input I"


def figure_columns(figure: str, images, target, gt, masks, outputs,
                   dilations) -> dict[str, torch.Tensor]:
    if figure == "figure_1":
        return figure_1_columns(images, target, gt, dilations, outputs)
    if figure == "table_v":
        return table_v_columns(images, target, masks, outputs)
    return grid_columns(images, target, masks, outputs)


def grid_columns(images, target, masks, outputs) -> dict[str, torch.Tensor]:
    """The grid's columns, labelled as the table rows (short forms of ``describe_row``)."""
    return {GRID_FIRST_COLUMN: images, "pretrained mask": masks["pretrained"],
            "joint mask": masks["joint"], "starting point": outputs["starting_point"],
            "Telea, pretr. mask": outputs["telea_pretrained_mask"],
            "Telea, joint mask": outputs["telea_joint_mask"], "joint": outputs["joint"],
            "ground truth I_G": target}


def table_v_columns(images, target, masks, outputs) -> dict[str, torch.Tensor]:
    """Fig. 4 of the paper: Table V's rows side by side, labelled with the row names (the
    external inpainters' columns are added after they ran: :func:`with_external_columns`)."""
    rows = ["telea_pretrained_mask", "ns_pretrained_mask", "random_inpainters_pretrained_mask",
            "without_mel", "joint"]
    return {GRID_FIRST_COLUMN: images, "pretrained mask": masks["pretrained"],
            **{row: outputs[row] for row in rows if row in outputs},
            "ground truth I_G": target}


def with_external_columns(columns: dict, fills: dict[str, torch.Tensor]) -> dict:
    """``columns`` of :func:`table_v_columns` with the external rows before w/o MEL and
    Ours, as Table V orders its baselines."""
    ours = [k for k in ("without_mel", "joint") if k in columns]
    before = {k: v for k, v in columns.items() if k not in ours and k != "ground truth I_G"}
    return {**before, **{row: list(images) for row, images in fills.items()},
            **{k: columns[k] for k in [*ours, "ground truth I_G"]}}


def figure_1_columns(images, target, gt, dilations, outputs) -> dict[str, torch.Tensor]:
    """Fig. 1 of the paper: the GT mask eroded by 2 px, exact and grown by 2 px, each with
    the pretrained inpainters' fill (those of the three that ``dilations`` has)."""
    shown = [d for d in (-2, 0, 2) if d in dilations]
    return {GRID_FIRST_COLUMN: images,
            **{f"mask gt_d{d}": grow_mask(gt, d) for d in shown},
            **{f"gt_d{d}": outputs[f"gt_d{d}"] for d in shown},
            "ground truth I_G": target}


HEADLINE_ROWS = ("joint", "starting_point", "telea_pretrained_mask")


def headline_metrics(table: dict) -> dict:
    """The ~10 numbers that answer "did this run do better?" (reports/metrics.json, what
    `dvc metrics diff` and `dvc exp show` display): PSNR/SSIM over all test pairs of the
    joint model, the paper's starting point and Telea on the same (pretrained) mask;
    the joint mask's coverage and added area beside the pretrained mask's coverage; the
    share of test pairs where no segment was found."""
    overall = {row: table[row]["all"] for row in HEADLINE_ROWS}
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
