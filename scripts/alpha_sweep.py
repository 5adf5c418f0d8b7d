"""The paper's α sweep (Table IV) and the w/o-MEL ablation as queued DVC experiments.

Queues one experiment per α (and one with the mask expansion loss off), runs the queue
one at a time, and prints a Markdown table of what MEL and α change: the joint model's
PSNR, mask coverage, added area and fallback rate on the test pairs. Each experiment
reruns only `train_joint` and `evaluate` (everything upstream is cached). Runs log to
this project's MLflow store.

    .venv/bin/python scripts/alpha_sweep.py [--alphas 0 0.01 0.03 0.05] [--no-run]
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


def run_sweep(alphas: list[float]) -> None:
    for alpha in alphas:
        dvc("exp", "run", "--queue", "-S", f"alpha={alpha}", "-S", "train.mask_expansion=true",
            "-n", experiment_name(alpha))
    dvc("exp", "run", "--queue", "-S", "train.mask_expansion=false", "-n", "without-mel")
    dvc("queue", "start", "--jobs", "1")
    while any(word in dvc("queue", "status") for word in ("Queued", "Running")):
        time.sleep(20)


def value(row: dict, suffix: str):
    for key, found in row.items():
        if key == suffix or key.endswith(":" + suffix) or key.endswith("." + suffix):
            return found
    return None


def table() -> str:
    import dvc.api

    lines = ["| experiment | α | MEL | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for row in dvc.api.exp_show():
        name = row.get("Experiment") or row.get("rev")
        if not name or not (name.startswith("alpha-") or name == "without-mel"):
            continue
        cells = [value(row, key) for key in COLUMNS.values()]
        lines.append(f"| {name} | {value(row, 'alpha')} | {value(row, 'train.mask_expansion')} | "
                     + " | ".join("–" if c is None else f"{c:.4g}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.05])
    parser.add_argument("--no-run", action="store_true", help="only print the table")
    args = parser.parse_args()
    # queued experiments run in a temporary copy: point them at this project's store
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    if not args.no_run:
        run_sweep(args.alphas)
    print(table())


if __name__ == "__main__":
    main()
