import os

import pytest

from maskopt.data.panoptic import PanopticDataset
from maskopt.data.sample_scenes import write_sample_dataset

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A tiny offline sample dataset (COCO panoptic layout), written once per session."""
    root = tmp_path_factory.mktemp("raw")
    write_sample_dataset(root, seed=3, counts={"train": 24, "val": 16}, width=96, height=72)
    return root


@pytest.fixture
def train_dataset(sample_root):
    return PanopticDataset.from_root(sample_root, "train")
