"""The paper-scale profile end to end on CPU, through the stage scripts `dvc repro` runs.

The params are params-coco.yaml itself — 256 px pairs, EdgeConnect-width inpainters
with 8 blocks, detectron2's PanopticFPN R50-FPN fed at its 640-800 px input scale, the
paper's λ and α — with only what cannot run here changed: a handful of sample pairs
instead of COCO, 2 steps per training stage at batch 2, two of Table I's six
dilations, one fine-tuning N of Table III, no pretrained weights (offline) and a
random VGG19. A change to
params-coco.yaml that breaks a stage fails this test. It includes a killed and
resumed joint training at that size, the evaluate stage and one `maskopt remove`.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny import apply

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
pytest.importorskip("detectron2", reason="params-coco.yaml runs detectron2's PanopticFPN: "
                    "install detectron2 (README; CI installs ../shared/wheels)")

SMOKE = {
    "data.source": "sample", "sample.train_images": 8, "sample.test_images": 8,
    "synthesize.train_pairs": 6, "synthesize.test_pairs": 4,
    "synthesize.validation_images": 4, "synthesize.validation_pairs": 4,
    "synthesize.workers": 1, "segmenter.weights": "none", "inpainter.vgg_weights": "random",
    "segmenter.freeze_at": 0,  # random weights offline: nothing to keep fixed
    "train.device": "cpu", "train.workers": 0, "train.threads": 2, "train.checkpoint_every": 1,
    # each training stage draws its grid with the networks at 256 px: 2 pairs, not 6
    "train.log_every": 1, "train.grid_pairs": 2, "evaluate.grid_pairs": 2,
    # Table I's d = 2…8 rows run the same code as d = -2 and 0, 4 inference passes more.
    "evaluate.dilations": [-2, 0],
    # the fixed-dilation sweep: one of the nine px values runs the same code as nine
    "evaluate.fixed_dilations": [0],
    # Table III: the paper's N exceed these 6 pairs; one N runs the same code as four
    "finetune.pairs": [4], "finetune.steps": 2,
    **{f"train.{stage}.steps": 2 for stage in ("segmentation", "inpainter", "joint")},
    **{f"train.{stage}.batch_size": 2 for stage in ("segmentation", "inpainter", "joint")},
}


def smoke_params() -> dict:
    return apply(yaml.safe_load((ROOT / "params-coco.yaml").read_text()), SMOKE)


def run_stage(project: Path, *args: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db"}
    done = subprocess.run([sys.executable, str(ROOT / "stages" / args[0]), *args[1:]],
                          cwd=project, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def paper_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("paper")
    params = smoke_params()
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for script in ("download.py", "synthesize.py", "pretrain_segmentation.py"):
        run_stage(project, script)
    for kind in ("edge", "segmentation", "image"):
        for masks in ("object", "random"):
            run_stage(project, "pretrain_inpainter.py", kind, masks)
    run_stage(project, "finetune_inpainter.py", "4")
    return project


def test_the_paper_profile_is_what_runs():
    params, coco = smoke_params(), yaml.safe_load((ROOT / "params-coco.yaml").read_text())
    assert params["synthesize"]["image_size"] == coco["synthesize"]["image_size"] == 256
    assert params["inpainter"]["width"] == 64 and params["inpainter"]["blocks"] == 8
    assert params["segmenter"]["depth"] == 50 and params["segmenter"]["fpn_channels"] == 256
    assert params["loss"] == coco["loss"] and params["alpha"] == coco["alpha"]


def test_joint_training_resumes_at_paper_scale(paper_project, monkeypatch):
    from maskopt.pipeline.params import load_params
    from maskopt.training import stages
    from maskopt.training.tasks import JointTask

    monkeypatch.chdir(paper_project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{paper_project}/mlflow.db")
    params = load_params("params.yaml")
    real_step, calls = JointTask.step, {"n": 0}

    def killed_after_first_step(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # stands in for kill -9 after the step-1 checkpoint
        return real_step(self, batch)

    monkeypatch.setattr(JointTask, "step", killed_after_first_step)
    with pytest.raises(KeyboardInterrupt):
        stages.train_joint(params)
    monkeypatch.setattr(JointTask, "step", real_step)
    assert Path(".checkpoints/train_joint.pt").exists()
    summary = stages.train_joint(params)
    assert summary["resumed_from"] == 1 and summary["steps"] == 2
    assert Path("models/joint.pt").exists()


def test_evaluate_and_remove_at_paper_scale(paper_project):
    if not (paper_project / "models/joint.pt").exists():
        run_stage(paper_project, "train_joint.py")
    run_stage(paper_project, "train_joint.py", "without-mel")
    run_stage(paper_project, "evaluate_baselines.py")
    run_stage(paper_project, "evaluate.py")
    run_stage(paper_project, "paper_report.py")
    tables = (paper_project / "reports/tables.md").read_text()
    assert "(256 px)" in tables and "starting_point" in tables
    paper = (paper_project / "reports/paper.md").read_text()
    assert "random mask training" in paper and "(256 px test pairs" in paper
    photo = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(photo).save(paper_project / "photo.png")
    done = subprocess.run([str(Path(sys.executable).parent / "maskopt"), "remove", "photo.png",
                           "--class", "person", "--min-score", "0", "-o", "clean.png"],
                          cwd=paper_project, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    clean = np.asarray(Image.open(paper_project / "clean.png"))
    assert clean.shape == photo.shape
