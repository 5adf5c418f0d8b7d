"""reports/paper.md: the paper's tables as the paper lays them out, each cell "ours
(paper)", and under each table the paper's claim with our paired comparison.

The paper's numbers are in ``paper_numbers.json`` beside this module, with the table
each comes from. Ours are the evaluate stage's rows (see ``evaluate.ROWS``); a table
whose rows this run did not make says so instead of showing numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from maskopt.evaluation.evaluate import external_name, finetuned_pairs, finetuned_row
from maskopt.evaluation.statistics import paired_comparison

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.json")
DIGITS = {"psnr": 2, "ssim": 3, "lpips": 3, "fid": 2}


def paper_numbers() -> dict:
    return json.loads(PAPER_NUMBERS.read_text())


def _cell(ours, paper, metric: str) -> str:
    digits = DIGITS[metric]
    mine = "–" if ours is None else f"{ours:.{digits}f}"
    return mine if paper is None else f"{mine} ({paper:.{digits}f})"


def _grid(metric: str, columns: dict[str, tuple[str | None, list | None]], table: dict,
          buckets: list[str]) -> list[str]:
    """Rows: the buckets of one metric; columns: name → (our row, the paper's numbers)."""
    lines = [f"| {metric.upper()} | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for i, bucket in enumerate(buckets):
        cells = []
        for row, paper in columns.values():
            ours = table.get(row, {}).get(bucket, {}).get(metric) if row else None
            cells.append(_cell(ours, None if paper is None else paper[i], metric))
        lines.append(f"| {bucket} % | " + " | ".join(cells) + " |")
    return lines + [""]


def _claim(text: str, a: list[float], b: list[float]) -> str:
    c = paired_comparison(a, b)
    return (f"- {text}: mean difference {c['mean_difference']:+.2f} dB, wins "
            f"{c['wins']}/{c['images']}, 95 % interval [{c['low']:+.2f}, {c['high']:+.2f}] — "
            f"{'holds' if c['holds'] else 'does not hold'} here.")


def _by_bucket(values: list[float], image_buckets: list[str], bucket: str) -> list[float]:
    return [v for v, b in zip(values, image_buckets, strict=True) if b == bucket]


def _table_iii(t3: dict, table: dict, per_image: dict, buckets: list[str]) -> list[str]:
    lines = [f"## Table III — {t3['caption']}", ""]
    counts = sorted(n for n in map(finetuned_pairs, table) if n is not None)
    if not counts or "random_inpainters_gt_mask" not in table:
        return lines + ["Not in this run: no fine-tuned inpainter was evaluated.", ""]
    lines += ["Ours: the image inpainter trained on random masks, fine-tuned on the first N "
              "object-mask training pairs (the edge and segmentation inpainters stay the "
              "random-mask ones), on the GT masks; N = 0 is Table II's random column. The "
              "paper's N are those of COCO; its numbers are in the second table.", ""]
    rows = {"N = 0": "random_inpainters_gt_mask",
            **{f"N = {n}": finetuned_row(n) for n in counts}}
    for metric in ("psnr", "ssim"):
        lines += _grid(metric, {k: (row, None) for k, row in rows.items()}, table, buckets)
    names = [f"N = {int(n) // 1000}k" if int(n) else "N = 0" for n in t3["psnr"]]
    lines += ["The paper's PSNR:", "", "| PSNR | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    lines += [f"| {bucket} % | " + " | ".join(f"{v[i]:.2f}" for v in t3["psnr"].values()) + " |"
              for i, bucket in enumerate(buckets)]
    lines.append("")
    base = per_image["random_inpainters_gt_mask"]
    lines += ["Paper: fine-tuning helps in every bucket, and most of the gain comes with "
              "the first 20k pairs (saturating up to 110k).", ""]
    for n in counts:
        lines.append(_claim(f"fine-tuned on {n} pairs > not fine-tuned",
                            per_image[finetuned_row(n)], base))
    gains = [sum(per_image[finetuned_row(n)]) / len(base) - sum(base) / len(base)
             for n in counts]
    if gains[-1] > 0:
        lines.append(f"- share of the gain at N = {counts[-1]} reached with N = {counts[0]}: "
                     f"{gains[0] / gains[-1]:.0%}.")
    return lines + [""]


def paper_markdown(table: dict, per_image: dict[str, list[float]], image_buckets: list[str],
                   dilations: list[int], mask_expansion: bool, image_size: int,
                   figures: dict[str, list[str]] | None = None) -> str:
    """``per_image``: each row's PSNR per test pair, in the order of ``image_buckets``.
    ``figures``: the grid files of ``evaluate.FIGURES`` (in reports/grids/) to show."""
    paper = paper_numbers()
    buckets = paper["buckets"]
    lines = ["# The paper's tables, reproduced on this run", "",
             f"Each cell is ours ({image_size} px test pairs of this run), with the paper's "
             f"number in brackets ({paper['source']}). Different data and scale: compare "
             "the shape of each result, not the values. Claims are tested on PSNR per test "
             "pair: mean difference, wins, paired bootstrap 95 % interval; a claim holds "
             "when the interval excludes 0.", ""]

    t1 = paper["table_1"]
    lines += [f"## Table I — {t1['caption']}", ""]
    for metric in ("psnr", "ssim"):
        columns = {f"d = {d:+d}": (f"gt_d{d}", t1[metric].get(str(d))) for d in dilations}
        lines += _grid(metric, columns, table, buckets)
    if "gt_d0" in per_image and "gt_d-2" in per_image:
        lines += ["Paper: a mask 2 px too small is far worse than the exact one, and growing "
                  "it costs little.", "",
                  _claim("the exact GT mask beats it eroded by 2 px", per_image["gt_d0"],
                         per_image["gt_d-2"]), ""]

    lines += _figure("Fig. 1 — the same hole filled with the GT mask eroded by 2 px, exact "
                     "and grown by 2 px (pretrained inpainters; the first test pair)",
                     (figures or {}).get("figure_1"))

    t2 = paper["table_2"]
    lines += [f"## Table II — {t2['caption']}", ""]
    if "random_inpainters_gt_mask" not in table:
        lines += ["Not in this run: the random-mask inpainters were not evaluated.", ""]
    else:
        for metric in ("psnr", "ssim"):
            columns = {"random mask training": ("random_inpainters_gt_mask",
                                                t2[metric]["random"]),
                       "object mask training": ("gt_d0", t2[metric]["object"])}
            lines += _grid(metric, columns, table, buckets)
        obj, rnd = per_image["gt_d0"], per_image["random_inpainters_gt_mask"]
        lines += ["Paper: object-mask training beats random-mask training in every bucket, "
                  "and the gap grows with the mask ratio (0.24 dB at 0–10 %, 1.40 dB at "
                  "30–40 %).", "", _claim("object > random masks, all pairs", obj, rnd)]
        for bucket in buckets:
            a, b = _by_bucket(obj, image_buckets, bucket), _by_bucket(rnd, image_buckets, bucket)
            if a:
                lines.append(_claim(f"object > random masks, {bucket} %", a, b))
        lines.append("")

    lines += _table_iii(paper["table_3"], table, per_image, buckets)

    t4 = paper["table_4"]
    lines += [f"## Table IV — {t4['caption']}", "",
              "One experiment per α: `scripts/alpha_sweep.py` (see README) runs them and "
              "writes this table to reports/alpha_sweep.md; this run has one α. The "
              "paper's mean PSNR: "
              + ", ".join(f"α = {a}: {v:.2f}" for a, v in t4["psnr"].items()) + ".", ""]

    t5 = paper["table_5"]
    ours = "Ours" if mask_expansion else "joint, MEL off"
    lines += [f"## Table V — {t5['caption']}", "",
              "Every column inpaints the pretrained segmenter's selected segment (the "
              "paper feeds PanopticFPN's mask to every baseline), except ours, which uses "
              "its own learned mask, as does w/o MEL (joint training without the mask "
              "expansion loss). EdgeC = EdgeConnect's networks trained on random masks. "
              f"This run's joint model is trained {'with' if mask_expansion else 'without'}"
              " the mask expansion loss.", ""]
    for metric in ("psnr", "ssim", "lpips", "fid"):
        columns = {"OpenCV Telea": ("telea_pretrained_mask", None),
                   "OpenCV NS": ("ns_pretrained_mask", None),
                   "EdgeC": ("random_inpainters_pretrained_mask"
                             if "random_inpainters_pretrained_mask" in table else None,
                             t5[metric]["EdgeC"]),
                   **{external_name(row): (row, None)
                      for row in table if external_name(row) is not None},
                   "w/o MEL": ("without_mel" if "without_mel" in table else None,
                               t5[metric]["w/o MEL"]),
                   ours: ("joint", t5[metric].get(ours))}
        lines += _grid(metric, columns, table, buckets)
    lines += [f"Paper: {ours} beats every baseline on PSNR in every bucket, and w/o MEL.", ""]
    baselines = [("without_mel", "w/o MEL"), ("random_inpainters_pretrained_mask", "EdgeC"),
                 ("telea_pretrained_mask", "OpenCV Telea"),
                 *((row, external_name(row))
                   for row in per_image if external_name(row) is not None)]
    for row, name in baselines:
        if row in per_image:
            lines.append(_claim(f"{ours} > {name}", per_image["joint"], per_image[row]))
    lines.append("")
    lines += _figure("Fig. 4 — Table V's rows on the same test pairs (columns named as the "
                     "rows above; each baseline fills the pretrained mask)",
                     (figures or {}).get("table_v"))
    return "\n".join(lines)


def _figure(title: str, files: list[str] | None) -> list[str]:
    if not files:
        return []
    return [f"## {title}", "", *(f"![{title.split(' —')[0]}](grids/{f})" for f in files), ""]
