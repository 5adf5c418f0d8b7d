"""MLflow: the parent run tells the experiment's story, the joint model is registered
and loads, queued experiments find the workspace's store."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from maskopt.pipeline import tracking


def test_queued_experiment_copies_log_to_the_workspace_store(tmp_path, monkeypatch):
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    copy.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(copy)
    assert tracking.workspace_root() == (tmp_path / "project").resolve()
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'project').resolve()}/mlflow.db"
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_parent_run_carries_key_params_and_children_are_named_after_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("DVC_EXP_NAME", "alpha-0p05")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    key = {"alpha": 0.05, "train.mask_expansion": True}
    with tracking.open_stage_run("train_joint", {"alpha": 0.05}, key) as run:
        run.log_parent_metrics({"psnr.joint": 20.5})
    with tracking.open_stage_run("evaluate", {"evaluate.dilations": [0]}, key):
        pass
    with tracking.open_stage_run("evaluate", {}, {**key, "alpha": 0.03}):
        pass  # same experiment name, other params: a parent of its own
    runs = mlflow.search_runs(experiment_names=["maskopt"], output_format="list")
    parents = [r for r in runs if "maskopt.parent" in r.data.tags]
    children = [r for r in runs if "maskopt.stage" in r.data.tags]
    assert sorted(p.data.params["alpha"] for p in parents) == ["0.03", "0.05"]
    first = next(p for p in parents if p.data.params["alpha"] == "0.05")
    assert first.info.run_name == "alpha-0p05" and first.data.metrics["psnr.joint"] == 20.5
    assert sorted(c.info.run_name for c in children) == [
        "alpha-0p05/evaluate", "alpha-0p05/evaluate", "alpha-0p05/train_joint"]
    for r in runs:
        assert r.data.tags["mlflow.source.git.commit"] == "a" * 40
        assert r.data.tags["dvc.exp_name"] == "alpha-0p05"
    experiment = mlflow.get_experiment_by_name("maskopt")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_joint_model_is_registered_and_loads_as_pyfunc(trained_project, monkeypatch):
    from test_remove import fixed_detections

    from maskopt.training.stages import REGISTERED_MODEL

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_project}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{trained_project}/mlflow.db")
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert len(versions) == 1
    run = mlflow.get_run(versions[0].run_id)
    assert run.info.run_name == "workspace/train_joint" and run.data.params["alpha"] == "0.03"
    tags = versions[0].tags
    assert tags["alpha"] == "0.03" and tags["experiment"] == "workspace"
    assert tags["precision"] in ("bf16", "fp32") and tags["commit"]
    assert run.data.tags["maskopt.precision"] == tags["precision"]
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@workspace")
    remover = model.unwrap_python_model().remover
    fixed_detections(remover, [[4.0, 4.0, 20.0, 20.0]])
    photo = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    clean = model.predict({"image": photo, "category": "person"})
    assert clean.shape == photo.shape and not np.array_equal(clean, photo)
    assert Path(trained_project / "models/joint.pt").exists()
    with pytest.raises(Exception, match="exactly one"):
        model.predict({"image": photo})


def test_an_experiment_has_one_parent_spanning_its_stages(trained_project):
    """The w/o-MEL ablation trains with other params, but belongs to the same experiment.
    (Other tests train in this store with other params, under parents of their own.)"""
    mlflow.set_tracking_uri(f"sqlite:///{trained_project}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["maskopt"], output_format="list")
    children = sorted((r for r in runs if "maskopt.stage" in r.data.tags),
                      key=lambda r: r.info.start_time)
    stages = [c.data.tags["maskopt.stage"] for c in children]
    fixture = children[:stages.index("train_joint_without_mel") + 1]  # the fixture's runs
    assert {c.data.tags["mlflow.parentRunId"] for c in fixture} == {
        fixture[0].data.tags["mlflow.parentRunId"]}
    parent = mlflow.get_run(fixture[0].data.tags["mlflow.parentRunId"])
    assert parent.data.params["train.mask_expansion"] == "True"
    assert parent.data.tags["maskopt.precision"] in ("bf16", "fp32")
    assert all(c.data.tags["maskopt.precision"] == parent.data.tags["maskopt.precision"]
               for c in fixture)
    mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
    assert parent.info.start_time <= min(c.info.start_time for c in mine)
    assert parent.info.end_time >= max(c.info.end_time for c in mine)


def test_stages_started_together_share_one_store_experiment_and_parent(tmp_path):
    """`maskopt repro` starts two stages at once on a fresh store: one of them creates
    the tables, the experiment and the parent run, the other finds them."""
    script = ("import sys; from maskopt.pipeline import tracking\n"
              "with tracking.open_stage_run(sys.argv[1], {'alpha': 0.03}, {'alpha': 0.03}):\n"
              "    pass\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "DVC_EXP_NAME": "together"}
    stages = [subprocess.Popen([sys.executable, "-c", script, stage], cwd=tmp_path, env=env,
                               stderr=subprocess.PIPE, text=True) for stage in ("one", "two")]
    for stage in stages:
        assert stage.wait(timeout=300) == 0, stage.stderr.read()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["maskopt"], output_format="list")
    parents = [r for r in runs if "maskopt.parent" in r.data.tags]
    children = [r for r in runs if "maskopt.stage" in r.data.tags]
    assert len(parents) == 1
    assert sorted(c.data.tags["maskopt.stage"] for c in children) == ["one", "two"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
