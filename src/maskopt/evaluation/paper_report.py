"""The `paper_report` stage: reports/paper.md and the paper's Fig. 3, from what
`evaluate` wrote and from the α sweep (scripts/alpha_sweep.py), so that a new sweep
rewrites the paper's tables in seconds instead of rerunning the evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskopt.core.io import atomic_path, read_json
from maskopt.core.signed_distance import normalized_signed_distance
from maskopt.evaluation.paper import PHI_ALPHAS, paper_markdown
from maskopt.evaluation.rows import FIGURES
from maskopt.pipeline.layout import REPORTS, STAGE_PARAMS
from maskopt.pipeline.params import Params
from maskopt.pipeline.tracking import flatten, open_stage_run, pick_params

EVALUATION = REPORTS / "evaluation.json"
PER_PAIR = REPORTS / "per_pair.json"
ALPHA_SWEEP = REPORTS / "alpha_sweep.json"  # scripts/alpha_sweep.py writes it; in git
SEEDS = REPORTS / "seeds.json"  # scripts/seeds.py writes it; in git
PAPER = REPORTS / "paper.md"
FIGURE_3 = REPORTS / "figure_3.png"


def rows_by_bucket(evaluation: dict) -> dict:
    """evaluation.json's {row: {metric: {bucket: v}}} as {row: {bucket: {metric: v}}}."""
    table: dict = {}
    for row, metrics in evaluation.items():
        if row in ("unavailable", "comparisons", "external_failures"):
            continue
        for metric, buckets in metrics.items():
            for bucket, value in buckets.items():
                table.setdefault(row, {}).setdefault(bucket, {})[metric] = value
    return table


def example_mask(size: int) -> np.ndarray:
    """An upright ellipse covering about 15 % of a square image: a person-sized hole."""
    ys, xs = np.mgrid[:size, :size]
    return ((xs - size / 2) / (0.17 * size)) ** 2 + ((ys - size / 2) / (0.28 * size)) ** 2 <= 1


def phi_plot(size: int, path: Path) -> None:
    """Fig. 3: φ of an example mask at ``size`` px (the colour map, −1..1) with the
    contour φ = α of each of the paper's α, and φ along the middle row."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    mask = example_mask(size)
    phi = normalized_signed_distance(mask)
    figure = Figure(figsize=(9, 4), dpi=120)
    left, right = figure.subplots(1, 2)
    shown = left.imshow(phi, cmap="coolwarm", vmin=-1, vmax=1)
    figure.colorbar(shown, ax=left, fraction=0.046)
    left.contour(mask.astype(float), [0.5], colors="black", linewidths=1)
    left.contour(phi, list(PHI_ALPHAS), colors="white", linewidths=0.6)
    left.set_title(f"φ at {size} px; white: φ = α", fontsize=9)
    left.axis("off")
    row = size // 2
    px = np.arange(size) - size / 2
    right.plot(px, phi[row], color="black", linewidth=1, label="φ, middle row")
    for alpha in PHI_ALPHAS:
        right.axhline(alpha, linewidth=0.8, linestyle="--",
                      label=f"α = {alpha:g}: {alpha * size:.1f} px outside")
    right.set_xlabel("px from the image centre")
    right.set_ylabel("φ")
    right.set_ylim(-0.3, 0.3)
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


# the stages whose results paper.md's claims read; the others' params (the fixed
# dilations, paper.md's own) change none of them
CLAIM_STAGES = [stage for stage in STAGE_PARAMS if stage not in ("fixed_dilation",
                                                                  "paper_report")]


def rerun_params(params: Params) -> dict[str, str]:
    """What must be equal for a run to be a rerun of this one: every param (dotted, as
    text) that a stage up to `evaluate` reads (pipeline.layout.STAGE_PARAMS), but the
    seed."""
    read = {key for stage in CLAIM_STAGES for key in STAGE_PARAMS[stage]} - {"seed"}
    return flatten(pick_params(params.model_dump(mode="json"), tuple(sorted(read))))


def is_rerun(run: dict, params: Params) -> bool:
    """Whether a recorded run (reports/seeds.json) is a rerun of ``params`` with another
    seed. A param added after the run was recorded counts as its default, which is
    what the run did; one the run recorded that is no longer a param (one that changed
    its shape, such as one number become one per kind) makes it another run."""
    current = rerun_params(params)
    recorded = {**rerun_params(Params()), **{k: str(v) for k, v in run["params"].items()}}
    return run["seed"] != params.seed and set(run["params"]) <= set(current) and all(
        recorded.get(key) == value for key, value in current.items())


def paper_report(params: Params) -> dict:
    evaluation = read_json(EVALUATION)
    per_pair = read_json(PER_PAIR)
    sweep = read_json(ALPHA_SWEEP) if ALPHA_SWEEP.exists() else []
    # runs of other seeds, with this run's params apart from the seed
    reruns = [run for run in (read_json(SEEDS) if SEEDS.exists() else [])
              if is_rerun(run, params)]
    figures = {figure: sorted(p.name for p in (REPORTS / "grids").glob(f"{figure}_*.png"))
               for figure in FIGURES}
    reads = pick_params(params.model_dump(), tuple(STAGE_PARAMS["paper_report"]))
    with open_stage_run("paper_report", reads, pick_params(params.model_dump())) as run:
        phi_plot(params.synthesize.image_size, FIGURE_3)
        text = paper_markdown(rows_by_bucket(evaluation), per_pair["psnr"], per_pair["buckets"],
                              params.evaluate.dilations, params.train.mask_expansion,
                              params.synthesize.image_size, figures, sweep, params.alpha,
                              FIGURE_3.name, {m: per_pair[m] for m in ("ssim", "lpips")
                                                if m in per_pair}, reruns)
        with atomic_path(PAPER) as tmp:
            tmp.write_text(text)
        run.log_artifact(PAPER)
        run.log_artifact(FIGURE_3)
    return {"tables": text.count("\n## Table")}
