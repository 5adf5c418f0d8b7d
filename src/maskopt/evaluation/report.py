"""Human-readable outputs of the evaluate stage: paper-style tables, plot data, grids."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from maskopt.core.imaging import tensor_to_rgb
from maskopt.data.synthesize import BUCKETS, bucket_name
from maskopt.evaluation.markdown import DIGITS, header, line, number
from maskopt.evaluation.paper_numbers import paper_numbers
from maskopt.evaluation.rows import row_named

BUCKET_NAMES = [bucket_name(low) for low, _ in BUCKETS]

# The paper's numbers (Shimosato & Ukita, on COCO), for comparison only.
_PAPER = paper_numbers()
PAPER_OURS = {metric: values["Ours"] for metric, values in _PAPER["table_5"].items()
              if isinstance(values, dict)}
PAPER_WITHOUT_MEL_PSNR = _PAPER["table_5"]["psnr"]["w/o MEL"]
PAPER_TABLE_I_PSNR_0_10 = {int(d): v[0] for d, v in _PAPER["table_1"]["psnr"].items()}
PAPER_TABLE_IV_MEAN_PSNR = {float(a): v for a, v in _PAPER["table_4"]["psnr"].items()}


def tables_markdown(table: dict, unavailable: dict[str, str], dilations: list[int],
                    alpha: float, mask_expansion: bool, image_size: int,
                    comparisons: list[dict] | None = None) -> str:
    joint = "joint + MEL" if mask_expansion else "joint w/o MEL"
    lines = [f"# Evaluation on the synthesized test pairs ({image_size} px)", "",
             f"Joint model: α = {alpha}, mask expansion loss {'on' if mask_expansion else 'off'}."
             " Columns are mask-ratio buckets (% of the image covered by the object).",
             "Rows marked *paper* are the numbers of Shimosato & Ukita on COCO, "
             "for reference; they are not ours.", "", "## Rows", ""]
    lines += [f"- `{row}`: {row_named(row).describe(mask_expansion)}" for row in table]
    lines += ["", "A segmenter's mask is the segment that overlaps M_G most; where no "
              "segment overlaps, the row scores an empty mask (the input unchanged) and "
              "counts a fallback (see the mask table).", ""]
    if comparisons:
        lines += ["## Paired comparisons (PSNR per image)", "",
                  "Wins: images where the first row scores higher. Interval: 95 % paired "
                  "bootstrap of the mean difference; a claim holds when it excludes 0.", "",
                  *header(["claim", "rows", "mean difference (dB)", "wins", "95 % interval",
                           "holds"])]
        for c in comparisons:
            claim = c["claim"].replace("joint", joint, 1) if c["a"] == "joint" else c["claim"]
            lines.append(f"| {claim} | `{c['a']}` − `{c['b']}` | {c['mean_difference']:+.2f} | "
                         f"{c['wins']}/{c['images']} | [{c['low']:+.2f}, {c['high']:+.2f}] | "
                         f"{'yes' if c['holds'] else 'no'} |")
        lines.append("")
    for metric in ("psnr", "ssim", "lpips", "fid"):
        lines += [f"## {metric.upper()}", ""]
        if metric in unavailable:
            lines += [f"Unavailable: {unavailable[metric]}", ""]
            continue
        digits = DIGITS[metric]
        lines += header(["row", *BUCKET_NAMES, "all"])
        for row, buckets in table.items():
            lines.append(line([row, *(number(buckets.get(b, {}).get(metric), digits)
                                      for b in [*BUCKET_NAMES, "all"])]))
        lines.append(line(["*paper: Ours*", *(number(v, digits) for v in PAPER_OURS[metric]),
                           "–"]))
        if metric == "psnr":
            lines.append(line(["*paper: w/o MEL*",
                               *(number(v, 2) for v in PAPER_WITHOUT_MEL_PSNR), "–"]))
        lines.append("")
    lines += ["## Mask: how the removed region relates to the object", "",
              *header(["row", "coverage", "precision", "IoU", "added area", "expansion (px)",
                       "fallback rate"])]
    for row, buckets in table.items():
        m = buckets.get("all", {})
        lines.append(line([row, *(number(m.get(f"mask_{k}"), 3) for k in (
            "coverage", "precision", "iou", "added_area", "expansion_px", "fallback_rate"))]))
    lines += ["", "## Table I: pretrained inpainters on the ground-truth mask grown by d px "
              "(PSNR, 0-10 % bucket)", "",
              *header(["d", "ours", "*paper*"])]
    for d in dilations:
        ours = table.get(f"gt_d{d}", {}).get(BUCKET_NAMES[0], {}).get("psnr")
        lines.append(line([f"{d:+d}", number(ours, 2),
                           number(PAPER_TABLE_I_PSNR_0_10.get(d), 2)]))
    lines += ["", "*paper* Table IV, mean PSNR over buckets by α: " + ", ".join(
        f"{a}: {v}" for a, v in PAPER_TABLE_IV_MEAN_PSNR.items())
              + ". Run the sweep with the README's `dvc exp run --queue` commands.", ""]
    if unavailable:
        lines += ["## Unavailable metrics", ""]
        lines += [f"- {name}: {reason}" for name, reason in unavailable.items()]
        lines.append("")
    return "\n".join(lines)


def plot_rows(table: dict, dilations: list[int]) -> tuple[dict[str, list[dict]], list[dict]]:
    """Data for `dvc plots`: per metric (PSNR, SSIM), a line per bucket (x = the bucket's
    middle mask ratio in %) with a field per plotted row, named by its series; and PSNR
    against the dilation d of the GT mask, with Telea's PSNR on the exact GT mask
    beside it."""
    middles = {bucket_name(low): round(50 * (low + high)) for low, high in BUCKETS}
    series = {name: label for name in table if (label := row_named(name).plotted)}
    by_bucket = {metric: [{"mask_ratio_pct": middles[b], "bucket": b,
                           **{label: round(table[name][b][metric], 4)
                              for name, label in series.items() if b in table[name]}}
                          for b in BUCKET_NAMES]
                 for metric in ("psnr", "ssim")}
    telea = table.get("telea_gt_mask", {}).get("all", {})
    per_dilation = [{"d": d, DILATED: round(table[f"gt_d{d}"]["all"]["psnr"], 4),
                     "ssim": round(table[f"gt_d{d}"]["all"]["ssim"], 4),
                     # a flat line: Telea on the exact GT mask, the level to beat
                     **({TELEA_EXACT: round(telea["psnr"], 4)} if telea else {})}
                    for d in dilations if f"gt_d{d}" in table]
    return by_bucket, per_dilation


# the series of the dilation plot (dvc.yaml names them)
DILATED = "pretrained inpainters, GT mask grown by d"
TELEA_EXACT = "OpenCV Telea, exact GT mask"


def _label_lines(name: str, width: int, font, scale: float) -> list[str]:
    """``name`` broken at underscores and spaces into lines that fit ``width`` pixels."""
    lines: list[str] = []
    for word in name.replace("_", "_ ").split(" "):
        if lines and cv2.getTextSize(lines[-1] + word, font, scale, 1)[0][0] <= width:
            lines[-1] += word if lines[-1].endswith("_") else " " + word
        else:
            lines.append(word)
    return lines


def labelled_grid(columns: dict[str, list[torch.Tensor]], tile: int = 128) -> np.ndarray:
    """Rows = pairs, columns = the named images, under a label strip (long names, such as
    the evaluation's row names, wrap onto several lines)."""
    font, scale, line_height = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 14
    names = list(columns)
    rows = len(columns[names[0]])
    labels = {name: _label_lines(name, tile - 6, font, scale) for name in names}
    header = 8 + line_height * max(len(lines) for lines in labels.values())
    canvas = np.full((header + rows * (tile + 2), len(names) * (tile + 2), 3), 255, np.uint8)
    for c, name in enumerate(names):
        x = c * (tile + 2)
        for i, text in enumerate(labels[name]):
            cv2.putText(canvas, text, (x + 3, 15 + i * line_height), font, scale, (0, 0, 0), 1,
                        cv2.LINE_AA)
        for r, image in enumerate(columns[name]):
            img = image.expand(3, -1, -1) if image.shape[0] == 1 else image
            arr = cv2.resize(tensor_to_rgb(img), (tile, tile), interpolation=cv2.INTER_NEAREST)
            y = header + r * (tile + 2)
            canvas[y:y + tile, x:x + tile] = arr
    return canvas
