"""The DVC pipeline itself: stages run, a second repro does nothing, params are scoped."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import TINY, apply

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def set_params(project, **changes):
    path = project / "params.yaml"
    params = apply(yaml.safe_load(path.read_text()), changes)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def changed_stages(project, env):
    status = json.loads(run(["dvc", "status", "--json"], project, env))
    return {name.split(":")[-1] for name in status}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of this repository's pipeline in a fresh git + DVC repo, with tiny params."""
    project = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("stages", "src"):
        shutil.copytree(ROOT / folder, project / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1")
    run(["git", "init", "-q"], project, env)
    run(["dvc", "init", "-q"], project, env)
    set_params(project, **TINY)
    run(["dvc", "repro", "--quiet"], project, env)
    return project, env


def test_repro_writes_pairs_and_metrics(project):
    project, _ = project
    report = json.loads((project / "reports" / "data.json").read_text())
    assert report["train"]["pairs"] == 16 and report["test"]["pairs"] == 8
    assert len(list((project / "data/pairs/test/images").iterdir())) == 8


def test_second_repro_does_nothing(project):
    project, env = project
    assert changed_stages(project, env) == set()
    assert "didn't change" in run(["dvc", "repro"], project, env)


def test_repro_runs_every_stage(project):
    project, _ = project
    for model in ("segmenter", "inpainter_edge", "inpainter_segmentation", "inpainter_image",
                  "joint"):
        assert (project / "models" / f"{model}.pt").exists()
    full = json.loads((project / "reports" / "evaluation.json").read_text())
    assert {"joint", "starting_point", "gt_d0", "telea_pretrained_mask"} <= set(full)
    for stage in ("pretrain_segmentation", "pretrain_inpainter_image", "train_joint"):
        curve = json.loads((project / "reports" / "curves" / f"{stage}.json").read_text())
        assert curve and all("step" in point for point in curve)
    assert (project / "mlflow.db").exists()


def test_synthesize_param_reruns_only_synthesize(project):
    project, env = project
    set_params(project, **{"synthesize.blur_sigma": 1.0})
    # later stages follow through their dependency on data/pairs, not through params
    assert changed_stages(project, env) == {"synthesize"}
    set_params(project, **{"synthesize.blur_sigma": 0.6})
    assert changed_stages(project, env) == set()


def test_alpha_reruns_only_joint_training_and_evaluation(project):
    project, env = project
    set_params(project, alpha=0.05)
    dry = run(["dvc", "repro", "--dry"], project, env)
    ran = {line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")}
    assert ran == {"train_joint", "evaluate"}
    set_params(project, alpha=0.03)
    assert changed_stages(project, env) == set()


RUN_ONLY = {"train.workers": 1, "train.threads": 2, "train.log_every": 3,
            "train.checkpoint_every": 5, "evaluate.grid_pairs": 3, "synthesize.workers": 2}


def test_run_only_settings_leave_every_stage_up_to_date(project):
    project, env = project
    original = (project / "params.yaml").read_text()
    try:
        for key, value in RUN_ONLY.items():
            set_params(project, **{key: value})
            assert changed_stages(project, env) == set(), f"{key} invalidated a stage"
    finally:
        (project / "params.yaml").write_text(original)


def test_dvc_metrics_are_the_few_headline_numbers(project):
    project, env = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env))

    def numbers(value):
        if isinstance(value, dict):
            return sum(numbers(v) for v in value.values())
        return int(isinstance(value, int | float))

    files = shown[""]["data"]
    assert list(files) == ["reports/metrics.json"]
    assert 8 <= numbers(files) <= 15


IMPORTS_OF_STAGE = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("stage", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for name, module in sorted(sys.modules.items()):
    if name.startswith("maskopt") and getattr(module, "__file__", None):
        print(os.path.relpath(module.__file__))
"""


def test_every_stage_depends_on_every_source_file_it_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = body["cmd"].split()[1]
        deps = [d.replace("${item}", "x") for d in body["deps"]]
        imported = subprocess.run([sys.executable, "-c", IMPORTS_OF_STAGE, script], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout.split()
        assert imported, name
        uncovered = [f for f in imported
                     if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
        assert not uncovered, f"stage {name} imports {uncovered} but does not depend on them"
