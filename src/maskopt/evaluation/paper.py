"""reports/paper.md: the paper's tables as the paper lays them out, each cell "ours
(paper)", and under each table the paper's claim with our paired comparison.

The paper's numbers are in ``paper_numbers.json`` (``paper_numbers``), with the table
each comes from. Ours are the evaluate stage's rows (see ``rows.ROWS``); a table
whose rows this run did not make says so instead of showing numbers.
"""

from __future__ import annotations

from maskopt.evaluation.markdown import DIGITS, cell, header, interval, line
from maskopt.evaluation.paper_numbers import paper_numbers
from maskopt.evaluation.rows import (
    PAPER_SIDE,
    ROWS,
    finetuned_row,
    pixels_here,
    row_named,
    table_v_rows,
)
from maskopt.evaluation.statistics import paired_comparison

PHI_ALPHAS = (0.01, 0.03, 0.05, 0.07)  # the paper's Table IV


def _grid(metric: str, columns: dict[str, tuple[str | None, list | None]], table: dict,
          buckets: list[str]) -> list[str]:
    """Rows: the buckets of one metric; columns: name → (our row, the paper's numbers)."""
    lines = header([metric.upper(), *columns])
    for i, bucket in enumerate(buckets):
        cells = []
        for row, paper in columns.values():
            ours = table.get(row, {}).get(bucket, {}).get(metric) if row else None
            cells.append(cell(ours, None if paper is None else paper[i], metric))
        lines.append(line([f"{bucket} %", *cells]))
    return lines + [""]


def _claim(text: str, a: list[float], b: list[float], rerun: str = "") -> str:
    c = paired_comparison(a, b)
    return (f"- {text}: mean difference {c['mean_difference']:+.2f} dB, wins "
            f"{c['wins']}/{c['images']}, 95 % interval [{c['low']:+.2f}, {c['high']:+.2f}] — "
            f"{'holds' if c['holds'] else 'does not hold'} here."
            + (f" Other seeds: {rerun}." if rerun else ""))


class Reruns:
    """The same comparisons in other runs of these params with another seed (their own
    data and training; reports/seeds.json): how far a rerun moves a claim."""

    def __init__(self, runs: list[dict] | None):
        self.runs = runs or []  # [{"seed": n, "table": {row: {bucket: {metric: v}}}}]

    def of(self, a: str, b: str, bucket: str = "all", metric: str = "psnr") -> str:
        """``a`` − ``b`` (their means) in each other run, e.g. "+0.12 (seed 1), …"."""
        cells = []
        for run in self.runs:
            x, y = (run["table"].get(r, {}).get(bucket, {}).get(metric) for r in (a, b))
            if x is not None and y is not None:
                cells.append(f"{x - y:+.{DIGITS[metric]}f} (seed {run['seed']})")
        return ", ".join(cells)


def _by_bucket(values: list[float], image_buckets: list[str], bucket: str) -> list[float]:
    return [v for v, b in zip(values, image_buckets, strict=True) if b == bucket]


def _table_iii(t3: dict, table: dict, per_image: dict, buckets: list[str],
               reruns: Reruns) -> list[str]:
    lines = [f"## Table III — {t3['caption']}", ""]
    counts = sorted(int(row.inpainter.removeprefix("finetuned_"))
                    for row in map(row_named, table) if row.inpainter.startswith("finetuned_"))
    if not counts or "random_inpainters_gt_mask" not in table:
        return lines + ["Not in this run: no fine-tuned inpainter was evaluated.", ""]
    lines += ["Ours: the image inpainter trained on random masks, fine-tuned on the first N "
              "object-mask training pairs (the edge and segmentation inpainters stay the "
              "random-mask ones), on the GT masks; N = 0 is Table II's random column. The "
              "paper's N are those of COCO; its numbers are in the second table.", ""]
    rows = {"N = 0": "random_inpainters_gt_mask",
            **{f"N = {n}": finetuned_row(n).name for n in counts}}
    for metric in ("psnr", "ssim"):
        lines += _grid(metric, {k: (row, None) for k, row in rows.items()}, table, buckets)
    names = [f"N = {int(n) // 1000}k" if int(n) else "N = 0" for n in t3["psnr"]]
    for metric, digits in (("psnr", 2), ("ssim", 3)):
        lines += [f"The paper's {metric.upper()}:", "", *header([metric.upper(), *names])]
        lines += [line([f"{bucket} %", *(f"{v[i]:.{digits}f}" for v in t3[metric].values())])
                  for i, bucket in enumerate(buckets)]
        lines.append("")
    base = per_image["random_inpainters_gt_mask"]
    lines += ["Paper: fine-tuning helps in every bucket, and most of the gain comes with "
              "the first 20k pairs (saturating up to 110k).", ""]
    for n in counts:
        lines.append(_claim(f"fine-tuned on {n} pairs > not fine-tuned",
                            per_image[finetuned_row(n).name], base,
                            reruns.of(finetuned_row(n).name, "random_inpainters_gt_mask")))
    gains = [sum(per_image[finetuned_row(n).name]) / len(base) - sum(base) / len(base)
             for n in counts]
    if gains[-1] > 0:
        lines.append(f"- share of the gain at N = {counts[-1]} reached with N = {counts[0]}: "
                     f"{gains[0] / gains[-1]:.0%}.")
    return lines + [""]


def paper_markdown(table: dict, per_image: dict[str, list[float]], image_buckets: list[str],
                   dilations: list[int], mask_expansion: bool, image_size: int,
                   figures: dict[str, list[str]] | None = None,
                   alpha_sweep: list[dict] | None = None, alpha: float = 0.03,
                   phi_figure: str | None = None,
                   per_image_more: dict[str, dict[str, list[float]]] | None = None,
                   reruns: list[dict] | None = None) -> str:
    """``per_image``: each row's PSNR per test pair, in the order of ``image_buckets``.
    ``figures``: the grid files of ``rows.FIGURES`` (in reports/grids/) to show.
    ``alpha_sweep``: the rows of reports/alpha_sweep.json (see :func:`table_iv`);
    ``phi_figure``: the file of Fig. 3 (φ and the α bands), relative to reports/.
    ``per_image_more``: {"ssim": as ``per_image``, "lpips": …}, the other metrics kept
    per pair (Table V's claims test them too; LPIPS where its network could be had).
    ``reruns``: reports/seeds.json, the same params' runs with other seeds (see
    :class:`Reruns`), whose differences are printed beside each claim."""
    paper = paper_numbers()
    other = Reruns(reruns)
    buckets = paper["buckets"]
    figures = figures or {}
    lines = ["# The paper's tables, reproduced on this run", "",
             f"Each cell is ours ({image_size} px test pairs of this run), with the paper's "
             f"number in brackets ({paper['source']}). Different data and scale: compare "
             "the shape of each result, not the values. Claims are tested on PSNR per test "
             "pair: mean difference, wins, paired bootstrap 95 % interval; a claim holds "
             "when the interval excludes 0.", "",
             "Beside each claim: the same difference in runs of these params with another "
             "seed (their own scenes, pairs and training; `scripts/seeds.py`), the noise "
             "of a rerun. A claim whose interval excludes 0 while another seed's "
             "difference has the other sign is not shown by this run alone."
             if other.runs else "No run with another seed is recorded "
             "(reports/seeds.json, `scripts/seeds.py`): the claims below have no rerun "
             "noise beside them.", ""]
    lines += _table_i(paper["table_1"], table, per_image, dilations, buckets, image_size,
                      other)
    step = pixels_here(2, image_size)
    lines += _figure(f"Fig. 1 — the same hole filled with the GT mask eroded by {step} px, "
                     f"exact and grown by {step} px (the paper's 2 px at {PAPER_SIDE} px; "
                     "pretrained inpainters; the first test pair)",
                     figures.get("figure_1"))
    lines += _table_ii(paper["table_2"], table, per_image, image_buckets, buckets, other)
    lines += _table_iii(paper["table_3"], table, per_image, buckets, other)
    lines += table_iv(paper["table_4"], alpha_sweep or [], alpha, table)
    if phi_figure:
        lines += _figure_3(phi_figure, image_size)
    lines += _table_v(paper["table_5"], table, per_image, mask_expansion, buckets,
                      image_buckets, per_image_more or {}, other)
    lines += _figure("Fig. 4 — Table V's rows on the same test pairs (columns named as the "
                     "rows above; each baseline fills the pretrained mask, w/o MEL and ours "
                     "their own learned masks, shown before their fills)",
                     figures.get("table_v"))
    return "\n".join(lines)


def _table_i(t1: dict, table: dict, per_image: dict, dilations: list[int],
             buckets: list[str], image_size: int, reruns: Reruns) -> list[str]:
    lines = [f"## Table I — {t1['caption']}", "",
             f"The paper's d is in pixels of COCO-sized images; at {image_size} px it is "
             f"scaled by {image_size} / {PAPER_SIDE}: "
             + ", ".join(f"d = {d:+d} here ↔ {paper_d(d, image_size):+g} at {PAPER_SIDE} px"
                         for d in dilations) + ". Each column is headed by this run's d; "
             "the paper's cell is that of the matching d at 256 px, where it has one.", ""]
    for metric in ("psnr", "ssim"):
        columns = {f"d = {d:+d}": (f"gt_d{d}", t1[metric].get(f"{paper_d(d, image_size):g}"))
                   for d in dilations}
        lines += _grid(metric, columns, table, buckets)
    eroded = f"gt_d{pixels_here(-2, image_size)}"
    if "gt_d0" in per_image and eroded in per_image:
        lines += ["Paper: a mask 2 px too small (at 256 px) is far worse than the exact one, "
                  "and growing it costs little.", "",
                  _claim(f"the exact GT mask beats it eroded by "
                         f"{-pixels_here(-2, image_size)} px", per_image["gt_d0"],
                         per_image[eroded], reruns.of("gt_d0", eroded)), ""]
    return lines


def paper_d(d: int, image_size: int) -> float:
    """This run's d in the paper's pixels (at 256 px)."""
    return d * PAPER_SIDE / image_size


def _table_ii(t2: dict, table: dict, per_image: dict, image_buckets: list[str],
              buckets: list[str], reruns: Reruns) -> list[str]:
    lines = [f"## Table II — {t2['caption']}", ""]
    if "random_inpainters_gt_mask" not in table:
        return lines + ["Not in this run: the random-mask inpainters were not evaluated.", ""]
    for metric in ("psnr", "ssim"):
        columns = {"random mask training": ("random_inpainters_gt_mask",
                                            t2[metric]["random"]),
                   "object mask training": ("gt_d0", t2[metric]["object"])}
        lines += _grid(metric, columns, table, buckets)
    obj, rnd = per_image["gt_d0"], per_image["random_inpainters_gt_mask"]
    lines += ["Paper: object-mask training beats random-mask training in every bucket, "
              "and the gap grows with the mask ratio (0.24 dB at 0–10 %, 1.40 dB at "
              "30–40 %).", "", _claim("object > random masks, all pairs", obj, rnd,
                                      reruns.of("gt_d0", "random_inpainters_gt_mask"))]
    for bucket in buckets:
        a, b = _by_bucket(obj, image_buckets, bucket), _by_bucket(rnd, image_buckets, bucket)
        if a:
            lines.append(_claim(f"object > random masks, {bucket} %", a, b,
                                reruns.of("gt_d0", "random_inpainters_gt_mask", bucket)))
    return lines + [""]


def _figure_3(phi_figure: str, image_size: int) -> list[str]:
    return ["## Fig. 3 — φ, the signed distance to M_G's boundary normalized to [−1, 1], "
            "and the band α pulls into the mask", "",
            f"φ is the distance divided by the image side ({image_size} px here), so α "
            "is a band width as a share of the side: "
            + ", ".join(f"α = {a:g}: {a * image_size:.1f} px ({a * 256:.1f} px at 256 px)"
                        for a in PHI_ALPHAS) + ".", "", f"![Fig. 3]({phi_figure})", ""]


def _table_v(t5: dict, table: dict, per_image: dict, mask_expansion: bool,
             buckets: list[str], image_buckets: list[str],
             per_image_more: dict[str, dict], reruns: Reruns) -> list[str]:
    ours = "Ours" if mask_expansion else "joint, MEL off"
    lines = [f"## Table V — {t5['caption']}", "",
             "Every column inpaints the pretrained segmenter's selected segment (the "
             "paper feeds PanopticFPN's mask to every baseline), except ours, which uses "
             "its own learned mask, as does w/o MEL (joint training without the mask "
             "expansion loss). EdgeC = EdgeConnect's published networks "
             "(`evaluate.edgeconnect_weights`; \"–\" where none were given); random-mask "
             "nets = maskopt's own three inpainters trained on random masks, as many steps "
             "as the object-mask ones. "
             f"This run's joint model is trained {'with' if mask_expansion else 'without'}"
             " the mask expansion loss.", ""]
    # every column of the table, made by this run or not; the external rows it made
    rows = table_v_rows([*ROWS, *(row for row in map(row_named, table) if row.external)])
    column = {row.name: ours if row.name == "joint" else row.table_v for row in rows}
    for metric in ("psnr", "ssim", "lpips", "fid"):
        lines += _grid(metric, {column[row.name]: (row.name, t5[metric].get(column[row.name]))
                                for row in rows}, table, buckets)
    lines += [f"Paper: {ours} beats every baseline on PSNR in every bucket, and w/o MEL.", ""]
    for row in rows:
        if row.name != "joint" and row.name in per_image:
            lines.append(_claim(f"{ours} > {column[row.name]}", per_image["joint"],
                                per_image[row.name], reruns.of("joint", row.name)))
    baselines = [(column[row.name], row.name) for row in rows
                 if row.name != "joint" and row.name in per_image]
    for metric, values in (("psnr", per_image), *per_image_more.items()):
        if values.get("joint"):
            lines += ["", *_bucket_claims(ours, metric, values, baselines, image_buckets,
                                          buckets, reruns)]
    lines += ["", "FID is compared by its means only: it is a statistic of the whole set, "
              "not of a pair." + ("" if per_image_more.get("lpips", {}).get("joint") else
                                  " LPIPS is not tested: its network could not be had for "
                                  "this run, so no pair has it.")]
    return lines + ["", *_where_the_paper_disagrees(paper_numbers()), ""]


def _where_the_paper_disagrees(paper: dict) -> list[str]:
    """The paper's own cells that cannot all hold, computed from its numbers."""
    ours = paper["table_5"]["psnr"]["Ours"]
    exact = paper["table_1"]["psnr"]["0"]
    at_003 = paper["table_4"]["psnr"]["0.03"]
    last, buckets = len(ours) - 1, paper["buckets"]
    return ["Where the paper's own cells disagree (its numbers, PSNR dB):", "",
            f"- Table V's Ours at {buckets[last]} % is {ours[last]:.2f}, above its own "
            f"{buckets[1]} % ({ours[1]:.2f}) and above Table I's exact GT mask at "
            f"{buckets[last]} % ({exact[last]:.2f}), although a larger hole costs more in "
            "every other row, and no mask fills better than the exact one.",
            f"- Table IV's mean at α = 0.03 is {at_003:.2f}; the mean of Table V's Ours "
            f"over the buckets is {sum(ours) / len(ours):.2f}."]


LOWER_IS_BETTER = ("lpips",)


def _bucket_claims(ours: str, metric: str, values: dict[str, list[float]],
                   baselines: list[tuple], image_buckets: list[str], buckets: list[str],
                   reruns: Reruns) -> list[str]:
    """A paired interval per baseline and bucket (✓: it holds, ours better: the interval
    above 0), and the difference on all pairs in the other seeds' runs. For a metric
    where lower is better (LPIPS) the difference is baseline − ours."""
    digits, lower = DIGITS[metric], metric in LOWER_IS_BETTER
    title = (f"baseline − {ours}, {metric.upper()} per test pair (lower is better)" if lower
             else f"{ours} − baseline, {metric.upper()} per test pair")
    lines = [f"{title} (mean difference [95 %]):", "",
             *header(["baseline", "all", *(f"{b} %" for b in buckets),
                      "all, other seeds"])]
    for name, row in baselines:
        better, worse = (row, "joint") if lower else ("joint", row)
        cells = []
        for bucket in [None, *buckets]:
            a, b = values[better], values[worse]
            if bucket is not None:
                a, b = (_by_bucket(v, image_buckets, bucket) for v in (a, b))
            if not a:
                cells.append("–")
                continue
            c = paired_comparison(a, b)
            cells.append(interval(c, digits) + (" ✓" if c["holds"] else ""))
        lines.append(line([name, *cells, reruns.of(better, worse, metric=metric) or "–"]))
    return lines


def table_iv(t4: dict, sweep: list[dict], alpha: float, table: dict) -> list[str]:
    """Table IV: mean PSNR and SSIM per α, "ours (paper)". One α per run: ours come from
    ``sweep``, scripts/alpha_sweep.py's experiments (rows: alpha, psnr, ssim, and the
    commit and seed they ran at), and, for this run's own α, from this run."""
    lines = [f"## Table IV — {t4['caption']}", ""]
    ours = {float(row["alpha"]): row for row in sweep}
    mine = table.get("joint", {}).get("all")
    alphas = sorted(set(ours) | {float(a) for a in t4["psnr"]} | {float(alpha)})
    lines += header(["", *(f"α = {a:g}" for a in alphas)])
    for metric in ("psnr", "ssim"):
        cells = []
        for a in alphas:
            theirs = next((v for k, v in t4[metric].items() if float(k) == a), None)
            cells.append(cell(ours.get(a, {}).get(metric), theirs, metric))
        lines.append(line([metric.upper(), *cells]))
    lines.append("")
    if ours:
        made = sorted({f"commit {row.get('commit', 'not recorded')}, seed {row.get('seed', 0)}"
                       for row in ours.values()})
        best = max(ours, key=lambda a: ours[a]["psnr"])
        lines += [f"Ours: one experiment per α by `scripts/alpha_sweep.py` "
                  f"(reports/alpha_sweep.json; {'; '.join(made)}). Best α there by PSNR: "
                  f"{best:g}; the paper's: 0.03."]
    else:
        lines += ["Ours: not run; `scripts/alpha_sweep.py` (see README) runs one experiment "
                  "per α and writes reports/alpha_sweep.json, which this table reads."]
    if mine is not None:
        lines += ["", f"This run (α = {alpha:g}): PSNR {mine['psnr']:.2f}, "
                  f"SSIM {mine['ssim']:.3f}."]
    return lines + [""]


def _figure(title: str, files: list[str] | None) -> list[str]:
    if not files:
        return []
    return [f"## {title}", "", *(f"![{title.split(' —')[0]}](grids/{f})" for f in files), ""]
