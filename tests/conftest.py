import os
from pathlib import Path

import pytest
from tiny import tiny_params

from maskopt.data.panoptic import PanopticDataset
from maskopt.data.sample_scenes import write_sample_dataset

# `make test` runs two pytest workers on the two cores of the machines this is built on
# (pytest-xdist): one torch thread each, or the four would contend for two cores
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")

# The modules that take most of the suite's time, started first: under `make test`
# (`--dist loadfile --no-loadscope-reorder`) each then begins on its own worker at
# once, and the many short modules fill in beside them instead of trailing after.
SLOWEST_FIRST = ("test_paper_scale.py", "test_dvc_pipeline.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A tiny offline sample dataset (COCO panoptic layout), written once per session."""
    root = tmp_path_factory.mktemp("raw")
    write_sample_dataset(root, seed=3, counts={"train": 24, "val": 16}, width=96, height=72)
    return root


@pytest.fixture
def train_dataset(sample_root):
    return PanopticDataset.from_root(sample_root, "train")


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory):
    """Tiny raw sample + synthesized pairs, made once per session."""
    from maskopt.data.prepare import prepare_raw_data, synthesize_pairs

    base = tmp_path_factory.mktemp("pairs")
    params = tiny_params()
    prepare_raw_data(params, base / "data/raw")
    synthesize_pairs(params, base / "data/raw", base / "data/pairs")
    return base / "data/pairs"


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, pairs_dir):
    """A project folder where every training stage has run on tiny params (2 steps each)."""
    from maskopt.training import stages

    root = tmp_path_factory.mktemp("trained")
    (root / "data").mkdir()
    (root / "data/pairs").symlink_to(pairs_dir)
    previous, uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
    os.chdir(root)
    try:
        params = tiny_params()
        stages.pretrain_segmentation(params)
        for kind in ("edge", "segmentation", "image"):
            stages.pretrain_inpainter(params, kind)
            stages.pretrain_inpainter(params, kind, "random")
        for pairs in params.finetune.pairs:
            stages.finetune_inpainter(params, pairs)
        stages.train_joint(params)
        stages.train_joint(params, without_mel=True)
    finally:
        os.chdir(previous)
        if uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    return root
