"""Learned mask against the best fixed dilation, over seeds (reports/fixed_dilation.md
holds one seed per run).

Queues one DVC experiment per extra seed (`dvc exp run --queue -S seed=N -n seed-N`; a
seed reruns the whole pipeline, as it draws the data too) and runs the queue ``--jobs``
at a time, as scripts/alpha_sweep.py does (two on a CPU, one with a GPU), then
reads reports/fixed_dilation.json of the workspace and of each seed-N experiment and
writes reports/fixed_dilation_seeds.md: per seed, d* and the learned mask − the
pretrained mask + d* (mean, wins, 95 % interval) for each inpainter, and the joint
model's total against that baseline split into the mask's and the inpainters' share.

    PATH="$PWD/.venv/bin:$PATH" .venv/bin/python scripts/fixed_dilation_seeds.py \
        [--seeds 1 2] [--jobs N] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from alpha_sweep import run_sweep  # scripts/ is on sys.path when this runs as a script
from seeds import experiment_file

REPORT = Path("reports/fixed_dilation.json")
OUT = Path("reports/fixed_dilation_seeds.md")
NAMES = {"pretrained": "pretrained inpainters", "joint": "joint inpainters",
         "telea": "OpenCV Telea"}


def experiment_report(name: str) -> dict | None:
    text = experiment_file(name, str(REPORT))
    return None if text is None else json.loads(text)


def cell(c: dict) -> str:
    return (f"{c['mean_difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] "
            f"{c['wins']}/{c['images']}")


def table(reports: dict[str, dict]) -> str:
    inpainters = [k for k in NAMES if all(k in r["best"] for r in reports.values())]
    lines = ["| seed | " + " | ".join(f"{NAMES[k]}: d*, learned − fixed [95 %], wins"
                                       for k in inpainters)
             + " | joint model − baseline | of which the mask | of which the inpainters |",
             "|---|" + "---|" * (len(inpainters) + 3)]
    for seed, report in reports.items():
        versus = report["learned_vs_best"]
        shares = report["shares"]
        lines.append(f"| {seed} | " + " | ".join(
            f"{report['best'][k]} px, {cell(versus[k]['all'])}" for k in inpainters)
            + " | " + " | ".join(cell(shares[k]) for k in ("total", "mask", "inpainters"))
            + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=None,
                        help="experiments at a time (default: 2 on a CPU, 1 with a GPU)")
    parser.add_argument("--no-run", action="store_true", help="only read the results")
    args = parser.parse_args()
    if not args.no_run:
        run_sweep([], args.seeds, args.jobs)
    workspace = json.loads(REPORT.read_text())
    seed = yaml.safe_load(Path("params.yaml").read_text()).get("seed", 0)
    reports = {f"{seed} (workspace)": workspace}
    for s in args.seeds:
        found = experiment_report(f"seed-{s}")
        if found is None:
            print(f"no seed-{s} experiment found; run without --no-run", file=sys.stderr)
            continue
        reports[str(s)] = found
    text = ("# Learned mask against the best fixed dilation, per seed\n\n"
            "Each row is one whole pipeline run (a seed draws the data and the weights). "
            "d* is chosen on that run's validation pairs; differences are paired over its "
            f"{workspace['test_pairs']} test pairs (mean, 95 % bootstrap interval, wins). "
            "The joint model − baseline is the joint model (learned mask, its inpainters) "
            "against the pretrained mask + d* filled by the pretrained inpainters; the mask's "
            "share fills both masks with the joint inpainters.\n\n" + table(reports) + "\n")
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
