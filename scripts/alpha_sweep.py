"""The paper's α sweep (Table IV), the w/o-MEL ablation and other seeds as queued DVC
experiments, with the tables that say whether the sample's claims hold.

Queues one experiment per α, one with the mask expansion loss off and, with
``--seeds``, one per extra seed (a seed reruns the whole pipeline: it also draws the
data). Runs the queue one at a time and prints two Markdown tables: what MEL and α
change (the joint model's PSNR, mask coverage, added area, fallback rate on the test
pairs), and each experiment's paired comparisons (mean PSNR difference and 95 %
bootstrap interval; a claim holds when the interval excludes 0). An α or MEL change
reruns only `train_joint` and `evaluate`. Runs log to this project's MLflow store.

    PATH="$PWD/.venv/bin:$PATH" .venv/bin/python scripts/alpha_sweep.py \
        [--alphas 0 0.01 0.03 0.05] [--seeds 1 2] [--no-run]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = {"PSNR": "joint.psnr.all", "coverage": "joint.mask_coverage.all",
           "added area": "joint.mask_added_area.all",
           "fallback rate": "joint.mask_fallback_rate.all"}


def dvc(*args: str) -> str:
    done = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def experiment_name(alpha: float) -> str:
    return "alpha-" + f"{alpha:g}".replace(".", "p")


COMMITS = 30
COMPARISONS = ("joint-vs-starting_point", "joint-vs-telea_pretrained_mask",
               "joint-vs-telea_joint_mask", "gt_d0-vs-telea_gt_mask", "gt_d0-vs-gt_d-2")


def run_sweep(alphas: list[float], seeds: list[int]) -> None:
    for alpha in alphas:
        dvc("exp", "run", "--queue", "-S", f"alpha={alpha}", "-S", "train.mask_expansion=true",
            "-n", experiment_name(alpha))
    dvc("exp", "run", "--queue", "-S", "train.mask_expansion=false", "-n", "without-mel")
    for seed in seeds:
        dvc("exp", "run", "--queue", "-S", f"seed={seed}", "-n", f"seed-{seed}")
    dvc("queue", "start", "--jobs", "1")
    while any(word in dvc("queue", "status") for word in ("Queued", "Running")):
        time.sleep(20)


def value(row: dict, suffix: str):
    for key, found in row.items():
        if key == suffix or key.endswith(":" + suffix) or key.endswith("." + suffix):
            return found
    return None


def ours(row: dict) -> bool:
    name = str(row.get("Experiment") or "")
    return name.startswith(("alpha-", "seed-")) or name == "without-mel"


def tables() -> str:
    import dvc.api

    # experiments of the last commits too: the sweep's base commit may not be HEAD now
    rows = [row for row in dvc.api.exp_show(num=COMMITS) if ours(row)]
    lines = ["| experiment | seed | α | MEL | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [value(row, key) for key in COLUMNS.values()]
        lines.append(f"| {row['Experiment']} | {value(row, 'seed')} | {value(row, 'alpha')} | "
                     f"{value(row, 'train.mask_expansion')} | "
                     + " | ".join("–" if c is None else f"{c:.4g}" for c in cells) + " |")
    lines += ["", "| experiment | " + " | ".join(COMPARISONS) + " |",
              "|---|" + "---|" * len(COMPARISONS)]
    for row in rows:
        cells = []
        for name in COMPARISONS:
            mean, low, high = (value(row, f"comparisons.{name}.{k}")
                               for k in ("mean_difference", "low", "high"))
            cells.append("–" if mean is None else
                         f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]{' ✓' if low > 0 else ''}")
        lines.append(f"| {row['Experiment']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.05])
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--no-run", action="store_true", help="only print the tables")
    args = parser.parse_args()
    # queued experiments run in a temporary copy: point them at this project's store
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    if not args.no_run:
        run_sweep(args.alphas, args.seeds)
    print(tables())


if __name__ == "__main__":
    main()
