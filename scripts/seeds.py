"""Rerun the pipeline with other seeds and record how far each claim moves.

Queues one DVC experiment per seed of ``--seeds`` (`dvc exp run -S seed=N -n seed-N`,
scripts/alpha_sweep.py's queue: two at a time on a CPU). A seed reruns the whole
pipeline: it draws other scenes and pairs and trains from another start (the zoo
segmenter is the same). Then it reads each seed-N experiment's params.yaml and
reports/evaluation.json and writes reports/seeds.json, one entry per seed: its params
(as paper_report compares them with its own), commit and every row's mean per bucket.
The paper_report stage prints those runs' differences beside each claim of
reports/paper.md; `dvc repro paper_report` redraws it. Prints, for docs/results.md,
every paired comparison of the workspace and of each seed.

    PATH="$PWD/.venv/bin:$PATH" .venv/bin/python scripts/seeds.py [--seeds 1 2] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml
from alpha_sweep import run_sweep  # scripts/ is on sys.path when this runs as a script

from maskopt.evaluation.paper_report import SEEDS, rerun_params, rows_by_bucket
from maskopt.pipeline.params import Params

EVALUATION = "reports/evaluation.json"


def git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def experiment_file(name: str, path: str) -> str | None:
    """``path`` as the newest experiment named ``name`` wrote it, or None."""
    refs = [r for r in (git("for-each-ref", "--sort=creatordate", "refs/exps",
                            "--format=%(refname)") or "").split() if r.endswith(f"/{name}")]
    return git("show", f"{refs[-1]}:{path}") if refs else None


def seed_run(seed: int) -> dict | None:
    """The seed-N experiment's entry of reports/seeds.json, or None if it has none."""
    params_text = experiment_file(f"seed-{seed}", "params.yaml")
    evaluation = experiment_file(f"seed-{seed}", EVALUATION)
    if params_text is None or evaluation is None:
        return None
    params = Params.model_validate(yaml.safe_load(params_text))
    commit = (git("rev-parse", "--short", "HEAD") or "").strip() or "not recorded"
    report = json.loads(evaluation)
    return {"seed": seed, "commit": commit, "params": rerun_params(params),
            "table": rows_by_bucket(report), "comparisons": report.get("comparisons", {})}


def comparison_table(runs: list[dict]) -> str:
    """Each paired comparison (rows) per run (columns): mean difference [95 %] ✓."""
    names = list(dict.fromkeys(k for run in runs for k in run["comparisons"]))
    lines = ["| comparison (A − B, PSNR dB) | " + " | ".join(f"seed {r['seed']}" for r in runs)
             + " |", "|---|" + "---|" * len(runs)]
    for name in names:
        cells = []
        for run in runs:
            c = run["comparisons"].get(name)
            cells.append("–" if c is None else f"{c['mean_difference']:+.2f} [{c['low']:+.2f}, "
                         f"{c['high']:+.2f}]{' ✓' if c['low'] > 0 else ''}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--no-run", action="store_true",
                        help="run nothing: reports/seeds.json from the seed experiments there are")
    args = parser.parse_args()
    if not args.no_run:
        run_sweep([], args.seeds, args.jobs)
    runs = [run for run in map(seed_run, args.seeds) if run is not None]
    if not runs:
        sys.exit("no seed-N experiment found; run without --no-run first")
    SEEDS.write_text(json.dumps([{k: v for k, v in run.items() if k != "comparisons"}
                                 for run in runs], indent=1) + "\n")
    own = json.loads(Path(EVALUATION).read_text())
    workspace = yaml.safe_load(Path("params.yaml").read_text()).get("seed", 0)
    print(comparison_table([{"seed": workspace, "comparisons": own.get("comparisons", {})},
                            *runs]))
    print(f"\nwrote {SEEDS} ({len(runs)} seeds); `dvc repro paper_report` prints them in "
          "reports/paper.md")


if __name__ == "__main__":
    main()
