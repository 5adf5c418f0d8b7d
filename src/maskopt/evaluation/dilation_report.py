"""reports/fixed_dilation.md and its plot: the learned mask against the best fixed
dilation (maskopt.evaluation.dilation)."""

from __future__ import annotations

from pathlib import Path

from maskopt.core.io import atomic_path
from maskopt.evaluation.dilation import LEARNED
from maskopt.evaluation.image_metrics import ALL
from maskopt.evaluation.markdown import interval

NAMES = {"pretrained": "pretrained inpainters", "joint": "joint + MEL inpainters",
         "telea": "OpenCV Telea"}


def inpainter_name(inpainter: str) -> str:
    return NAMES.get(inpainter, f"external {inpainter}")


def dilation_markdown(report: dict, plot_file: str) -> str:
    best, dilations = report["best"], report["dilations"]
    test = report["psnr"]["test"]
    lines = [
        "# Learned margin against the best fixed dilation",
        "",
        f"The pretrained segmenter's selected mask grown by d px (d in {dilations}), "
        "filled by each inpainter, against the learned mask (the joint + MEL segmenter's), "
        "filled by the same inpainter. d* is the d with the best mean PSNR on the "
        f"{report['validation_pairs']} validation pairs (train images held out of "
        f"training); every other number is on the {report['test_pairs']} test pairs, "
        "filled at d* and with the learned mask only (the best d is the validation "
        "pairs' question, not the test pairs'). Differences are paired per test image: "
        "mean, wins, 95 % bootstrap interval; *holds* when the whole interval is above 0.",
        "",
        "| inpainter | d* | PSNR, pretrained mask + d* | PSNR, learned mask | learned − fixed "
        "[95 %] | wins | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for inpainter, comparison in report["learned_vs_best"].items():
        c = comparison[ALL]
        lines.append(f"| {inpainter_name(inpainter)} | {best[inpainter]} px | "
                     f"{test[inpainter][str(best[inpainter])]:.2f} | "
                     f"{test[inpainter][LEARNED]:.2f} | {interval(c)} | "
                     f"{c['wins']}/{c['images']} | {'yes' if c['holds'] else 'no'} |")
    buckets = [b for b in next(iter(report["learned_vs_best"].values())) if b != ALL]
    lines += ["", "Per mask-ratio bucket (learned − fixed d*, dB [95 %]):", "",
              "| inpainter | " + " | ".join(buckets) + " |",
              "|---|" + "---|" * len(buckets)]
    for inpainter, comparison in report["learned_vs_best"].items():
        lines.append(f"| {inpainter_name(inpainter)} | "
                     + " | ".join(interval(comparison[b]) for b in buckets) + " |")
    shares = report["shares"]
    lines += [
        "", "## The joint model against the practitioner's baseline", "",
        "The joint model (learned mask, its inpainters) against the pretrained mask grown "
        f"by d* = {best['pretrained']} px filled by the pretrained inpainters, and the "
        "two parts of that difference: the mask (both masks filled by the joint "
        f"inpainters, fixed d* = {best['joint']} px) and the inpainters (the fixed mask "
        "filled by each).", "",
        "| difference | dB [95 %] | wins |", "|---|---|---|",
        *(f"| {part} | {interval(c)} | {c['wins']}/{c['images']} |"
          for part, c in shares.items()),
        "", "## PSNR against d", "",
        f"![PSNR against d]({plot_file})", "",
        "| inpainter | split | " + " | ".join(f"d={d}" for d in dilations) + " | learned |",
        "|---|---|" + "---|" * (len(dilations) + 1),
    ]
    for split, curves in report["psnr"].items():
        for inpainter, points in curves.items():
            cells = [points.get(str(d)) for d in dilations] + [points[LEARNED]]
            lines.append(f"| {inpainter_name(inpainter)} | {split} | " + " | ".join(
                "–" if v is None else f"{v:.2f}" for v in cells) + " |")
    for inpainter, why in report["failures"].items():
        lines += ["", f"Left out: {inpainter}: {why}"]
    return "\n".join(lines) + "\n"


def dilation_plot(report: dict, path: Path) -> None:
    """Validation PSNR against d per inpainter, its learned mask as a dashed line of the
    same colour, d* starred; the test pairs' PSNR at d* and on the learned mask as
    hollow markers."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    dilations = report["dilations"]
    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.subplots()
    for inpainter, points in report["psnr"]["validation"].items():
        line, = axes.plot(dilations, [points[str(d)] for d in dilations], marker="o",
                          markersize=3, label=f"{inpainter_name(inpainter)}, pretrained mask + d")
        colour = line.get_color()
        axes.axhline(points[LEARNED], color=colour, linestyle="--", linewidth=1)
        d = report["best"][inpainter]
        axes.plot([d], [points[str(d)]], marker="*", markersize=12, color=colour)
        test = report["psnr"]["test"].get(inpainter)
        if test:
            axes.plot([d, d], [test[str(d)], test[LEARNED]], linestyle="none", marker="o",
                      markersize=7, markerfacecolor="none", color=colour)
    axes.set_xlabel("fixed dilation d of the pretrained mask (px)")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title("validation pairs; dashed: learned mask; star: d*; hollow: test pairs "
                   "at d* and with the learned mask", fontsize=8)
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
