"""The paper's α sweep (Table IV) and other seeds as queued DVC experiments, with the
tables that say whether the sample's claims hold.

Queues one experiment per α (the workspace's own α is its run, not queued again) and,
with ``--seeds``, one per extra seed (a seed reruns the whole pipeline: it also draws
the data); the w/o-MEL ablation is a stage of every run (`train_joint_without_mel`).
Runs the queue ``--jobs`` experiments at a time (two on a CPU with two cores or more,
one with a GPU: maskopt.pipeline.repro.default_jobs), each with ``cores // jobs`` torch threads,
and prints two Markdown tables: what MEL and α change (the joint model's PSNR, SSIM,
mask coverage, added area, fallback rate on the test pairs), and each experiment's
paired comparisons (mean PSNR difference and 95 % bootstrap interval; a claim holds
when the interval excludes 0). It also writes reports/alpha_sweep.json, one row per α
of ``--alphas``, which the paper_report stage lays out as the paper's Table IV in
reports/paper.md (each run holds one α). An α change reruns only the two joint
trainings, `evaluate`, `fixed_dilation` and `paper_report`. Queued runs log to this
project's MLflow store (see maskopt.pipeline.tracking); the comparisons come from each
experiment's reports/evaluation.json.

    PATH="$PWD/.venv/bin:$PATH" .venv/bin/python scripts/alpha_sweep.py \
        [--alphas 0.01 0.03 0.05 0.07] [--seeds 1 2] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from maskopt.pipeline.repro import jobs_and_cores, thread_env

COLUMNS = {"PSNR": "psnr.joint", "SSIM": "ssim.joint", "coverage": "mask.coverage",
           "added area": "mask.added_area", "fallback rate": "mask.fallback_rate"}


def dvc(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["dvc", *args], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def experiment_name(alpha: float) -> str:
    return "alpha-" + f"{alpha:g}".replace(".", "p")


COMMITS = 30
PAPER_ALPHAS = [0.01, 0.03, 0.05, 0.07]
# the last: the GT mask eroded by the paper's 2 px, in the run's pixels (1 at 128 px)
COMPARISONS = ("joint-vs-starting_point", "joint-vs-telea_pretrained_mask",
               "joint-vs-telea_joint_mask", "gt_d0-vs-telea_gt_mask", "gt_d0-vs-gt_d-")


def run_sweep(alphas: list[float], seeds: list[int], jobs: int | None = None,
              cores: int | None = None) -> None:
    """Queue an experiment per new α and per seed, run the queue ``jobs`` at a time
    (default: maskopt.repro's), and exit with the names of those that failed."""
    jobs, cores = jobs_and_cores(jobs, cores)
    own = float(yaml.safe_load(Path("params.yaml").read_text())["alpha"])
    failed_before = failed_tasks(dvc("queue", "status"))
    names = []
    for alpha in alphas:
        if alpha == own:
            continue  # the workspace's run is this α's row
        names.append(experiment_name(alpha))
        dvc("exp", "run", "--queue", "-S", f"alpha={alpha}", "-S", "train.mask_expansion=true",
            "-n", names[-1])
    for seed in seeds:
        names.append(f"seed-{seed}")
        dvc("exp", "run", "--queue", "-S", f"seed={seed}", "-n", names[-1])
    # Training stages pin their own threads (train.threads); this sets evaluate's, so
    # that experiments side by side do not ask for more threads than there are cores.
    # The queue's workers inherit the environment of `dvc queue start`.
    env = {**os.environ, **thread_env(max(1, cores // jobs))}
    dvc("queue", "start", "--jobs", str(jobs), env=env)
    while True:
        status = dvc("queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(20)
    failed = sorted({name for task, name in failed_tasks(status) - failed_before
                     if name in names})
    if failed:
        sys.exit(f"failed: {', '.join(failed)}; `dvc queue logs NAME` shows why")


def failed_tasks(status: str) -> set[tuple[str, str]]:
    """(task, name) of each failed experiment in `dvc queue status`'s table."""
    rows = (line.split() for line in status.splitlines())
    return {(row[0], row[1]) for row in rows if len(row) >= 4 and row[-1] == "Failed"}


def value(row: dict, suffix: str):
    for key, found in row.items():
        if key == suffix or key.endswith(":" + suffix) or key.endswith("." + suffix):
            return found
    return None


def row_name(row: dict) -> str:
    return str(row.get("Experiment") or row.get("rev"))


def ours(row: dict) -> bool:
    """The sweep's finished experiments and the workspace (the committed params);
    queued or running ones show their baseline's numbers, so they are left out."""
    if row.get("State") not in (None, "Success"):
        return False
    return row_name(row).startswith(("alpha-", "seed-")) or row_name(row) in ("without-mel",
                                                                        "workspace")


def comparisons(row: dict) -> dict:
    """The paired comparisons of an experiment, from its commit's evaluation.json."""
    rev = row.get("rev") or "HEAD"
    if rev == "workspace":
        path = Path("reports/evaluation.json")
        text = path.read_text() if path.exists() else "{}"
    else:
        done = subprocess.run(["git", "show", f"{rev}:reports/evaluation.json"],
                              capture_output=True, text=True)
        text = done.stdout if done.returncode == 0 else "{}"
    return json.loads(text).get("comparisons", {})


def tables() -> str:
    import dvc.api

    # experiments of the last commits too: the sweep's base commit may not be HEAD now
    rows = [row for row in dvc.api.exp_show(num=COMMITS) if ours(row)]
    lines = ["| experiment | seed | α | MEL | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [value(row, key) for key in COLUMNS.values()]
        lines.append(f"| {row_name(row)} | {value(row, 'seed')} | {value(row, 'alpha')} | "
                     f"{value(row, 'train.mask_expansion')} | "
                     + " | ".join(f"{c:.4g}" if isinstance(c, int | float) else "–"
                                  for c in cells) + " |")
    lines += ["", "| experiment | " + " | ".join(COMPARISONS) + " |",
              "|---|" + "---|" * len(COMPARISONS)]
    for row in rows:
        cells, found = [], comparisons(row)
        for name in COMPARISONS:
            c = next((found[k] for k in found if k == name or k.startswith(name)
                      and name.endswith("-")), None)
            cells.append("–" if c is None else f"{c['mean_difference']:+.2f} [{c['low']:+.2f}, "
                         f"{c['high']:+.2f}] {c['wins']}{' ✓' if c['low'] > 0 else ''}")
        lines.append(f"| {row_name(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SWEEP = Path("reports/alpha_sweep.json")  # paper_report's Table IV; dvc.yaml plots it too


def sweep_points() -> dict[float, dict]:
    """α → the joint model's PSNR, SSIM, coverage and added area (MEL on, seed 0)."""
    import dvc.api

    points = {}
    for row in dvc.api.exp_show(num=COMMITS):
        if not ours(row) or str(value(row, "train.mask_expansion")) != "True" \
                or value(row, "seed") not in (0, 0.0):
            continue
        cells = {k: value(row, key) for k, key in (("psnr", "psnr.joint"),
                 ("ssim", "ssim.joint"), ("coverage", "mask.coverage"),
                 ("added_area", "mask.added_area"))}
        if all(isinstance(v, int | float) for v in cells.values()):
            points.setdefault(float(value(row, "alpha")), cells)
    return points


def write_sweep(points: dict[float, dict]) -> list[dict]:
    """reports/alpha_sweep.json: one row per α, with the commit the sweep ran on."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "not recorded"
    rows = [{"alpha": a, **{k: points[a][k] for k in ("psnr", "ssim", "coverage",
                                                        "added_area")},
             "seed": 0, "commit": commit} for a in sorted(points)]
    SWEEP.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=None,
                        help="default: the paper's 0.01 0.03 0.05 0.07; with --no-run, "
                             "every α experiment there is (what `make plots` draws)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--jobs", type=int, default=None,
                        help="experiments at a time (default: 2 on a CPU, 1 with a GPU)")
    parser.add_argument("--no-run", action="store_true",
                        help="run nothing: tables and reports/alpha_sweep.json from the "
                             "experiments there are")
    args = parser.parse_args()
    if not args.no_run:
        args.alphas = args.alphas or PAPER_ALPHAS
        run_sweep(args.alphas, args.seeds, args.jobs)
    print(tables())
    from maskopt.evaluation.paper import table_iv
    from maskopt.evaluation.paper_numbers import paper_numbers

    # the α asked for: other α experiments of this repository stay out of Table IV
    rows = write_sweep({a: p for a, p in sweep_points().items()
                        if args.alphas is None or a in args.alphas})
    print("\n" + "\n".join(table_iv(paper_numbers()["table_4"], rows, 0.03, {})))
    print(f"written to {SWEEP}; `dvc repro paper_report` puts it into reports/paper.md")


if __name__ == "__main__":
    main()
