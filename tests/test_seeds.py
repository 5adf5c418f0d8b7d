"""scripts/seeds.py: other seeds' runs into reports/seeds.json, and their table."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _seeds_module():
    sys.path.insert(0, str(ROOT / "scripts"))  # it imports alpha_sweep beside it
    spec = importlib.util.spec_from_file_location("seeds", ROOT / "scripts/seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_seed_experiment_becomes_an_entry_that_paper_report_takes(tmp_path, monkeypatch):
    from maskopt.evaluation.paper_report import rerun_params
    from maskopt.pipeline.params import Params

    seeds = _seeds_module()
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "reports").mkdir()
    evaluation = {"joint": {"psnr": {"all": 21.0, "0-10": 25.0}},
                  "starting_point": {"psnr": {"all": 20.5, "0-10": 24.0}},
                  "comparisons": {"joint-vs-starting_point": {
                      "mean_difference": 0.5, "wins": 30, "low": 0.2, "high": 0.8}}}
    (tmp_path / "reports" / "evaluation.json").write_text(json.dumps(evaluation))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 1}))
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "seed 1 run")
    _git(tmp_path, "update-ref", "refs/exps/ab/cdef0123/seed-1", _git(tmp_path, "rev-parse",
                                                                       "HEAD"))
    monkeypatch.chdir(tmp_path)
    run = seeds.seed_run(1)
    assert run["seed"] == 1 and run["params"] == rerun_params(Params())
    assert run["table"]["joint"]["0-10"]["psnr"] == 25.0
    assert seeds.seed_run(2) is None  # no such experiment
    table = seeds.comparison_table([{"seed": 0, "comparisons": {}}, run])
    assert "| joint-vs-starting_point | – | +0.50 [+0.20, +0.80] ✓ |" in table
