"""The DVC pipeline itself: stages run, a second repro does nothing, params are scoped."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def set_params(project, **changes):
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        section = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            section = section[key]
        section[leaf] = value
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
    set_params(project, **{"sample.train_images": 16, "sample.test_images": 8,
                           "synthesize.workers": 1})
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


def test_synthesize_param_reruns_only_synthesize(project):
    project, env = project
    set_params(project, **{"synthesize.blur_sigma": 1.0})
    assert changed_stages(project, env) == {"synthesize"}
    set_params(project, **{"synthesize.blur_sigma": 0.6})
    assert changed_stages(project, env) == set()
