import hashlib

import numpy as np

from maskopt.core.io import read_json
from maskopt.data.panoptic import split_paths
from maskopt.data.sample_scenes import write_sample_dataset


def test_sample_is_coco_panoptic_and_reads_back(sample_root, train_dataset):
    _, json_path, _ = split_paths(sample_root, "train")
    data = read_json(json_path)
    assert {c["name"] for c in data["categories"] if c["isthing"]} == {"person"}
    assert sum(1 for c in data["categories"] if not c["isthing"]) >= 5
    assert len(train_dataset) == 24
    stuff_seen, persons = set(), 0
    for i in range(len(train_dataset)):
        item = train_dataset.load(i)
        assert item.rgb.shape == (72, 96, 3) and item.rgb.dtype == np.uint8
        listed = {s["id"] for s in item.record.segments}
        assert set(np.unique(item.ids)) == listed  # every pixel belongs to a listed segment
        for seg in item.record.segments:
            assert seg["area"] == int((item.ids == seg["id"]).sum())
            category = train_dataset.categories[seg["category_id"]]
            if category["isthing"]:
                persons += 1
            else:
                stuff_seen.add(category["name"])
    assert len(stuff_seen) >= 5
    assert persons >= len(train_dataset)  # one to three figures per scene


def _digest(root):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()))


def test_sample_is_deterministic_per_seed(tmp_path):
    counts = {"train": 4, "val": 2}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_sample_dataset(tmp_path / name, seed, counts, 64, 48)
    assert _digest(tmp_path / "a").digest() == _digest(tmp_path / "b").digest()
    assert _digest(tmp_path / "a").digest() != _digest(tmp_path / "c").digest()


def test_persons_vary_in_size(train_dataset):
    person = train_dataset.category_id("person")
    heights = [s["bbox"][3] for r in train_dataset.records for s in r.segments
               if s["category_id"] == person]
    assert max(heights) > 2 * min(heights)
