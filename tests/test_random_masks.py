"""Random hole masks (maskopt.data.random_masks): the paper's random-pattern masks."""

import numpy as np
import pytest
import torch
from PIL import Image

from maskopt.core.errors import MaskoptError
from maskopt.data.random_masks import FolderMasks, ProceduralMasks, RandomMaskPairs, random_masks
from maskopt.data.synthesize import BUCKETS, bucket_name


def test_procedural_masks_cover_the_object_masks_range_bucket_by_bucket():
    masks = ProceduralMasks(seed=0, min_ratio=0.01, max_ratio=0.40)
    ratios = np.array([masks(i, 0, 64).mean() for i in range(400)])
    assert ratios.min() >= 0.01 and ratios.max() <= 0.40 + 0.03  # overshoot: one small shape
    counts = {bucket_name(low): 0 for low, _ in BUCKETS}
    for r in ratios:
        counts[bucket_name(min(r, 0.4))] += 1
    assert all(60 <= n <= 140 for n in counts.values()), counts  # uniform: 100 each


def test_procedural_masks_are_binary_and_deterministic_per_pair_and_epoch():
    masks = ProceduralMasks(seed=3, min_ratio=0.05, max_ratio=0.3)
    first = masks(7, 2, 64)
    assert first.dtype == bool and first.shape == (64, 64)
    assert np.array_equal(first, ProceduralMasks(3, 0.05, 0.3)(7, 2, 64))
    assert not np.array_equal(first, masks(8, 2, 64))
    assert not np.array_equal(first, masks(7, 3, 64))
    assert not np.array_equal(first, ProceduralMasks(4, 0.05, 0.3)(7, 2, 64))


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_folder_masks_read_binary_masks_at_the_pairs_size(tmp_path):
    hole = np.zeros((128, 96), np.uint8)
    hole[20:60, 10:50] = 255
    _save(tmp_path / "a.png", hole)
    _save(tmp_path / "b.png", 255 - hole)
    masks = FolderMasks(tmp_path, seed=0)
    read = [masks(i, 0, 32) for i in range(8)]
    assert all(m.dtype == bool and m.shape == (32, 32) for m in read)
    shares = {round(float(m.mean()), 2) for m in read}
    assert len(shares) == 2  # both files are drawn
    black = FolderMasks(tmp_path, seed=0, hole="black")
    assert np.array_equal(black.read(tmp_path / "a.png"), hole <= 127)


def test_folder_masks_errors_name_the_problem(tmp_path):
    with pytest.raises(MaskoptError, match="not a folder"):
        FolderMasks(tmp_path / "missing", seed=0)
    with pytest.raises(MaskoptError, match="no mask images"):
        FolderMasks(tmp_path, seed=0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MaskoptError, match="broken.png: unreadable"):
        FolderMasks(tmp_path, seed=0)
    (tmp_path / "broken.png").unlink()
    rng = np.random.default_rng(0)
    _save(tmp_path / "photo.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    with pytest.raises(MaskoptError, match="photo.png: a colour image"):
        FolderMasks(tmp_path, seed=0)
    (tmp_path / "photo.png").unlink()
    _save(tmp_path / "grey.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    with pytest.raises(MaskoptError, match="grey.png: not a binary mask"):
        FolderMasks(tmp_path, seed=0)
    (tmp_path / "grey.png").unlink()
    _save(tmp_path / "empty.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(MaskoptError, match="empty.png: the mask is all hole or no hole"):
        FolderMasks(tmp_path, seed=0)
    with pytest.raises(MaskoptError, match="random_masks.folder is not set"):
        random_masks("folder", 0, 0.01, 0.4)


class _Pairs:
    taxonomy = None

    def __len__(self):
        return 2

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        blank = torch.zeros(1, 16, 16)
        return {"image": torch.zeros(3, 16, 16), "target": torch.full((3, 16, 16), index + 1.0),
                "gray": blank, "target_gray": blank + 1, "edges": blank,
                "target_edges": blank + 2, "semantic": torch.zeros(16, 16, dtype=torch.long),
                "target_semantic": torch.ones(16, 16, dtype=torch.long), "mask": blank}


def test_random_mask_pairs_hide_a_random_hole_in_the_background():
    masks = ProceduralMasks(0, 0.1, 0.3)
    pairs = RandomMaskPairs(_Pairs(), masks)
    item = pairs[(1, 4)]
    assert torch.equal(item["image"], item["target"])  # the input is I_G, no pasted person
    assert torch.equal(item["gray"], item["target_gray"])
    assert torch.equal(item["edges"], item["target_edges"])
    assert torch.equal(item["semantic"], item["target_semantic"])
    expected = torch.from_numpy(masks(1, 4, 16).astype(np.float32))[None]
    assert torch.equal(item["mask"], expected) and item["mask"].sum() > 0
