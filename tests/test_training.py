"""Training stages on a tiny project: outputs, resume, NaN guard, clear errors, torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from tiny import TINY, apply, tiny_params

from maskopt.core.errors import MaskoptError
from maskopt.training import stages
from maskopt.training.tasks import InpainterTask

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, pairs_dir, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/pairs").symlink_to(pairs_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


def test_pretrain_inpainter_writes_model_metrics_grid_and_mlflow_run(project):
    params = tiny_params(**{"train.grid_pairs": 3})
    summary = stages.pretrain_inpainter(params, "edge")
    assert summary["steps"] == 2 and "loss_g_first" in summary and "loss_ef_last" in summary
    assert Path("models/inpainter_edge.pt").exists()
    assert json.loads(Path("reports/train/pretrain_inpainter_edge.json").read_text())["steps"] == 2
    grid = Image.open("reports/train/pretrain_inpainter_edge.png")
    assert grid.width == 3 * params.synthesize.image_size  # one column per drawn pair
    import mlflow

    runs = mlflow.search_runs(experiment_names=["maskopt"], output_format="list")
    child = [r for r in runs if r.data.tags.get("maskopt.stage") == "pretrain_inpainter@edge"]
    parent = [r for r in runs if r.data.tags.get("maskopt.parent") == "workspace"]
    assert len(child) == 1 and len(parent) == 1
    assert child[0].data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    assert child[0].data.params["train.inpainter.steps"] == "2"  # flattened params
    assert "loss_g" in child[0].data.metrics


def test_killed_stage_resumes_from_its_last_checkpoint(project, monkeypatch):
    params = tiny_params(**{"train.inpainter": {"steps": 4, "lr": 1e-4, "batch_size": 2}})
    real_step, calls = InpainterTask.step, {"n": 0}

    def dies_at_third_step(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stands in for kill -9 after the step-2 checkpoint
        return real_step(self, batch)

    def killed_run(run_params):
        calls["n"] = 0
        monkeypatch.setattr(InpainterTask, "step", dies_at_third_step)
        with pytest.raises(KeyboardInterrupt):
            stages.pretrain_inpainter(run_params, "edge")
        monkeypatch.setattr(InpainterTask, "step", real_step)

    killed_run(params)
    assert not Path("models/inpainter_edge.pt").exists()
    # other params never continue that checkpoint
    other = tiny_params(**{"train.inpainter": {"steps": 4, "lr": 2e-4, "batch_size": 2}})
    assert stages.pretrain_inpainter(other, "edge")["resumed_from"] == 0
    killed_run(params)
    summary = stages.pretrain_inpainter(params, "edge")
    assert summary["resumed_from"] == 2 and summary["steps"] == 4
    assert not Path(".checkpoints/pretrain_inpainter_edge.pt").exists()  # done: removed


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(project, monkeypatch):
    params = tiny_params(**{"train.inpainter": {"steps": 4, "lr": 1e-4, "batch_size": 2}})
    real_step, calls = InpainterTask.step, {"n": 0}

    def nan_at_third_step(self, batch):
        calls["n"] += 1
        values = real_step(self, batch)
        return {**values, "loss_g": float("nan")} if calls["n"] == 3 else values

    monkeypatch.setattr(InpainterTask, "step", nan_at_third_step)
    with pytest.raises(MaskoptError, match=r"non-finite loss loss_g at step 3.*step 2\) kept"):
        stages.pretrain_inpainter(params, "edge")
    saved = torch.load(".checkpoints/pretrain_inpainter_edge.pt", weights_only=True)
    assert saved["step"] == 2


def test_joint_training_needs_the_upstream_models(project):
    with pytest.raises(MaskoptError, match=r"dvc repro pretrain_segmentation"):
        stages.train_joint(tiny_params())


def test_unwritable_mlflow_store_fails_before_training(project, monkeypatch):
    Path("blocker").write_text("a file where the store's folder would go")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/blocker/mlflow.db")
    with pytest.raises(MaskoptError, match="MLflow store .* cannot be used"):
        stages.pretrain_inpainter(tiny_params(), "edge")
    assert not Path(".checkpoints").exists()


def test_full_chain_and_mismatched_checkpoint(trained_project, monkeypatch):
    monkeypatch.chdir(trained_project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_project}/mlflow.db")
    summary = json.loads(Path("reports/train/train_joint.json").read_text())
    assert 0 <= summary["coverage_last"] <= 1 and "loss_x_first" in summary
    assert summary["steps"] == 2
    saved = torch.load("models/joint.pt", weights_only=True)
    assert set(saved["networks"]) == {"segmenter", "edge", "segmentation", "image"}
    wider = tiny_params(**{"inpainter.width": 8})
    with pytest.raises(MaskoptError, match="does not match the params .*width"):
        stages.train_joint(wider)


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(project):
    params = apply(apply({}, TINY), {"train.inpainter": {"steps": 2, "lr": 1e-4,
                                                         "batch_size": 2}})
    Path("params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(ROOT / "stages/pretrain_inpainter.py"), "edge"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads(Path("reports/train/pretrain_inpainter_edge.json").read_text())
    assert summary["steps"] == 2
    assert Path("models/inpainter_edge.pt").exists()


def test_fine_tuning_starts_from_the_random_mask_checkpoint(trained_project, monkeypatch):
    """Table III: finetune_inpainter loads the random-mask image inpainter's weights (both
    networks) before its first step, and trains on the first N pairs only."""
    import torch

    from maskopt.models.build import load_model
    from maskopt.training import stages
    from maskopt.training.tasks import InpainterTask

    monkeypatch.chdir(trained_project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_project}/mlflow.db")
    start = load_model("models/inpainter_random_image.pt", "x")["networks"]
    seen = {}
    real_step = InpainterTask.step

    def first_step(self, batch):
        if not seen:
            seen["generator"] = {k: v.clone() for k, v in self.generator.state_dict().items()}
            seen["discriminator"] = {k: v.clone()
                                     for k, v in self.discriminator.state_dict().items()}
            seen["names"] = set(batch["name"])
        return real_step(self, batch)

    monkeypatch.setattr(InpainterTask, "step", first_step)
    stages.finetune_inpainter(tiny_params(), 4)
    for net in ("generator", "discriminator"):
        for key, value in start[net]["state_dict"].items():
            assert torch.equal(seen[net][key], value), (net, key)
    from maskopt.data.pairs import PairDataset

    first_four = set(PairDataset(trained_project / "data/pairs/train").pairs.names[:4])
    assert seen["names"] <= first_four
    assert (trained_project / "models/finetuned/inpainter_image_4.pt").exists()


@pytest.mark.parametrize("given", ["segmenter", "labels"])
def test_the_segmentation_inpainter_learns_on_what_it_gets_later(project, trained_project,
                                                                 monkeypatch, given):
    """inpainter.segmentation_input: segmenter — its pretraining input is the pretrained
    segmenter's class probabilities (joint training's and evaluation's input), not the
    one-hot labels of I; `labels` keeps those."""
    from maskopt.core.imaging import one_hot
    from maskopt.models.build import load_model, restore

    (project / "models").mkdir()
    (project / "models/segmenter.pt").write_bytes(
        (trained_project / "models/segmenter.pt").read_bytes())
    seen = {}
    real = InpainterTask.classes_of_input

    def recording(self, batch):
        given_input = real(self, batch)
        seen.setdefault("batch", batch)
        seen.setdefault("input", given_input)
        return given_input

    monkeypatch.setattr(InpainterTask, "classes_of_input", recording)
    params = tiny_params(**{"train.amp": False, "inpainter.segmentation_input": given})
    stages.pretrain_inpainter(params, "segmentation")
    batch, classes = seen["batch"], seen["input"].shape[1]
    labels = one_hot(batch["semantic"], classes)
    if given == "labels":
        assert torch.equal(seen["input"], labels)
        return
    segmenter = restore(load_model("models/segmenter.pt", "x")["networks"]["segmenter"]).eval()
    with torch.no_grad():
        expected = segmenter.semantic_probs(batch["image"])
    assert torch.allclose(seen["input"], expected, atol=1e-5)
    assert not torch.equal(seen["input"], labels)


def test_segmenter_lr_drops_tenfold_at_its_fractions_and_resumes_there(tmp_path):
    from pydantic import ValidationError

    from maskopt.models.segmenter import PanopticFPN
    from maskopt.training.checkpoint import restore_training, save_checkpoint
    from maskopt.training.distributed import Context
    from maskopt.training.tasks import SegmentationTask

    params = tiny_params(**{"train.segmentation": {"steps": 4, "lr": 1e-3, "batch_size": 2,
                                                   "lr_drops": [0.5]}})
    ctx = Context(0, 1, 0, torch.device("cpu"))

    def task():
        torch.manual_seed(0)
        return SegmentationTask(PanopticFPN(1, 3, depth=18, fpn_channels=32, image_size=32,
                                            box_batch_size=16), params, ctx)

    mask = torch.zeros(1, 32, 32, dtype=torch.uint8)
    mask[:, 8:24, 12:20] = 1
    batch = {"image": torch.rand(2, 3, 32, 32), "semantic": torch.randint(1, 3, (2, 32, 32)),
             "instances": [{"boxes": torch.tensor([[12.0, 8.0, 20.0, 24.0]]),
                            "labels": torch.tensor([1]), "masks": mask}] * 2}
    first = task()
    lrs = []
    for _ in range(2):
        lrs.append(first.optimizer.param_groups[0]["lr"])
        first.step(batch)
    assert lrs == [1e-3, 1e-3] and first.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    save_checkpoint(tmp_path / "c.pt", step=2, fingerprint="f", modules=first.modules,
                    optimizers=first.optimizers)
    resumed = task()
    restore_training(torch.load(tmp_path / "c.pt", weights_only=True), resumed.modules,
                     resumed.optimizers, "c.pt")
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    with pytest.raises(ValidationError, match="increasing fractions"):
        tiny_params(**{"train.segmentation": {"steps": 4, "lr": 1e-3, "lr_drops": [0.8, 0.5]}})


def test_the_loader_takes_no_draw_from_the_training_random_stream(pairs_dir):
    # the segmenter samples its RoIs from torch's global generator: a draw taken by the
    # loader would make the model depend on train.workers
    from maskopt.data.pairs import PairDataset
    from maskopt.training.distributed import Context
    from maskopt.training.loop import make_loader

    ctx = Context(0, 1, 0, torch.device("cpu"))
    torch.manual_seed(0)
    untouched = torch.rand(3)
    for workers in (0, 1):
        torch.manual_seed(0)
        loader = make_loader(PairDataset(pairs_dir / "train", 1.0), ctx, 2, workers, seed=0)
        for epoch in range(2):  # as the training loop does
            loader.sampler.set_epoch(epoch)
            assert len(list(loader)) == len(loader)
        assert torch.equal(torch.rand(3), untouched), f"{workers} workers"


@pytest.mark.parametrize("cache_pairs", [True, False])
def test_the_segmentation_inpainter_runs_the_frozen_segmenter_once_per_pair(cache_pairs):
    from maskopt.models.build import build, inpainter_config
    from maskopt.models.segmenter import PanopticFPN
    from maskopt.training.distributed import Context

    params = tiny_params(**{"train.cache_pairs": cache_pairs})
    torch.manual_seed(0)
    segmenter = PanopticFPN(1, 3, depth=18, fpn_channels=32, image_size=32).eval()
    task = InpainterTask("segmentation", build(inpainter_config(params, "segmentation", 3)),
                         params, Context(0, 1, 0, torch.device("cpu")), 3, segmenter)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = segmenter.semantic_probs(images)
    seen = []
    real = segmenter.semantic_probs
    segmenter.semantic_probs = lambda batch: seen.append(len(batch)) or real(batch)
    first = task.classes_of_input({"image": images[:2], "name": ["a", "b"],
                                   "flipped": [False, False]})
    # b again, and b mirrored: another image, so another key
    second = task.classes_of_input({"image": images[1:], "name": ["b", "b"],
                                    "flipped": [False, True]})
    assert seen == ([2, 1] if cache_pairs else [2, 2])
    assert torch.allclose(first, expected[:2], atol=1e-5)
    assert torch.allclose(second, expected[1:], atol=1e-5)


# every setting a changed model follows from is a stage param; these are not
RUN_ONLY_CHANGES = {"train.workers": 1, "train.checkpoint_every": 1, "train.log_every": 2,
                    "train.grid_pairs": 2}


def _trained_weights(folder: Path, pairs_dir: Path, **changes) -> dict[str, dict]:
    """The segmenter, and the edge and segmentation inpainters (the latter on the
    segmenter's class probabilities), trained for 2 steps in a fresh project."""
    folder.mkdir()
    (folder / "data").mkdir()
    (folder / "data/pairs").symlink_to(pairs_dir)
    previous = Path.cwd()
    os.chdir(folder)
    try:
        params = tiny_params(**changes)
        stages.pretrain_segmentation(params)
        stages.pretrain_inpainter(params, "edge")
        stages.pretrain_inpainter(params, "segmentation")
        return {name: torch.load(f"models/{name}.pt", weights_only=True)["networks"]
                for name in ("segmenter", "inpainter_edge", "inpainter_segmentation")}
    finally:
        os.chdir(previous)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def test_run_only_settings_train_the_same_model(tmp_path, pairs_dir, monkeypatch):
    """What RUN_ONLY lists (pipeline.layout) changes how a stage runs, never what it
    learns: the weights are bit-identical. train.threads and train.cache_pairs are not
    among them: they round sums differently, so they are stage params (dvc.yaml)."""
    from maskopt.pipeline.layout import RUN_ONLY, STAGE_PARAMS

    assert set(RUN_ONLY_CHANGES) == set(RUN_ONLY)
    assert "train.threads" in STAGE_PARAMS["train_joint"]
    assert "train.cache_pairs" in STAGE_PARAMS["pretrain_inpainter"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    reference = _trained_weights(tmp_path / "reference", pairs_dir)
    for key, value in RUN_ONLY_CHANGES.items():
        changed = _trained_weights(tmp_path / key, pairs_dir, **{key: value})
        assert _same(changed, reference), f"{key}={value} changed the trained weights"
