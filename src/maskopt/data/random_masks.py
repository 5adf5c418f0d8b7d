"""Random hole masks: the paper's "random-pattern masks" [52] for Tables II, III and V.

The paper trains its baseline inpainters on the irregular holes of Liu et al. (ECCV
2018, partial convolutions), which EdgeConnect also trains on: holes of free shape —
long strokes of varying width, bends and blobs — grouped by the share of the image
they cover. That set was made from occlusions between video frames and cannot be
downloaded here, so :class:`ProceduralMasks` draws such holes (strokes with round
joints and ellipses) until a target share, drawn uniformly from the object masks'
range, is covered. Users who have the NVIDIA mask set read it with
:class:`FolderMasks`.

Both are deterministic in (seed, pair index, epoch). :class:`RandomMaskPairs` turns
the training pairs into random-mask training data: the hole is the random mask over
the untouched background I_G, and I_G is the target.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from maskopt.core.errors import MaskoptError

MASK_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
# A mask image is binary up to interpolation: at most this share of grey pixels.
MAX_GREY_SHARE = 0.05
CHECKED_ON_OPEN = 16  # mask files read when a folder is opened, to fail before training


def irregular_mask(rng: np.random.Generator, size: int, ratio: float) -> np.ndarray:
    """A size×size boolean hole of strokes and blobs covering about ``ratio`` of it.

    Shapes are added until the hole covers ``ratio``; a shape that would overshoot the
    target by more than 2 % of the image is drawn again smaller, so the share lands just
    above the target."""
    hole = np.zeros((size, size), np.uint8)
    target = ratio * size * size
    while hole.sum() < target:
        for shrink in (1.0, 0.5, 0.25, 0.125):
            candidate = hole.copy()
            _draw_shape(rng, candidate, size, shrink)
            if candidate.sum() <= target + 0.02 * size * size or shrink == 0.125:
                hole = candidate
                break
    return hole.astype(bool)


def _draw_shape(rng: np.random.Generator, canvas: np.ndarray, size: int, shrink: float) -> None:
    if rng.random() < 0.75:  # a stroke: a polyline with round joints, as a brush leaves
        width = max(1, int(rng.uniform(0.03, 0.12) * size * shrink))
        point = rng.uniform(0, size, 2)
        for _ in range(int(rng.integers(1, 6))):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.1, 0.4) * size * shrink
            step = np.clip(point + length * np.array([np.cos(angle), np.sin(angle)]), 0, size - 1)
            cv2.line(canvas, tuple(int(v) for v in point), tuple(int(v) for v in step), 1, width)
            cv2.circle(canvas, tuple(int(v) for v in step), width // 2, 1, -1)
            point = step
    else:  # a blob
        centre = tuple(int(v) for v in rng.uniform(0, size, 2))
        axes = tuple(max(1, int(v)) for v in rng.uniform(0.03, 0.15, 2) * size * shrink)
        cv2.ellipse(canvas, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)


class ProceduralMasks:
    """Irregular holes (:func:`irregular_mask`) whose share of the image is uniform in
    [``min_ratio``, ``max_ratio``], one per (pair index, epoch)."""

    def __init__(self, seed: int, min_ratio: float, max_ratio: float):
        if not 0 < min_ratio < max_ratio < 1:
            raise MaskoptError(f"random masks need 0 < min_ratio < max_ratio < 1 "
                               f"(got {min_ratio}, {max_ratio})")
        self.seed, self.min_ratio, self.max_ratio = seed, min_ratio, max_ratio

    def __call__(self, index: int, epoch: int, size: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, index, epoch))
        return irregular_mask(rng, size, rng.uniform(self.min_ratio, self.max_ratio))


class FolderMasks:
    """Mask images from a folder (e.g. NVIDIA's irregular mask set), one drawn per (pair
    index, epoch) and resized to the pairs' size; ``hole`` says which colour is the hole
    (EdgeConnect reads white as the hole)."""

    def __init__(self, folder: str | Path, seed: int, hole: str = "white"):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MaskoptError(f"{self.folder}: random_masks.folder is not a folder")
        self.files = sorted(p for p in self.folder.iterdir()
                            if p.suffix.lower() in MASK_SUFFIXES)
        if not self.files:
            raise MaskoptError(f"{self.folder}: no mask images "
                               f"({', '.join(sorted(MASK_SUFFIXES))}) in random_masks.folder")
        if hole not in ("white", "black"):
            raise MaskoptError(f"random_masks.hole must be white or black (got {hole!r})")
        self.seed, self.hole_is_white = seed, hole == "white"
        for path in self.files[:CHECKED_ON_OPEN]:
            self.read(path)

    def read(self, path: Path) -> np.ndarray:
        """The hole of one mask file as a boolean array; a clear error for anything else."""
        try:
            with Image.open(path) as image:
                image.load()
                rgb = np.asarray(image.convert("RGB"), np.int16)
        except (OSError, UnidentifiedImageError) as exc:
            raise MaskoptError(f"{path}: unreadable mask image ({exc})") from exc
        if (rgb.max(axis=2) - rgb.min(axis=2) > 16).mean() > MAX_GREY_SHARE:
            raise MaskoptError(f"{path}: a colour image, not a black-and-white mask")
        gray = rgb.mean(axis=2)
        if ((gray > 32) & (gray < 223)).mean() > MAX_GREY_SHARE:
            raise MaskoptError(f"{path}: not a binary mask (more than "
                               f"{MAX_GREY_SHARE:.0%} grey pixels)")
        hole = gray > 127 if self.hole_is_white else gray <= 127
        if hole.all() or not hole.any():
            raise MaskoptError(f"{path}: the mask is all hole or no hole "
                               f"(random_masks.hole: {'white' if self.hole_is_white else 'black'})")
        return hole

    def __call__(self, index: int, epoch: int, size: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, index, epoch))
        hole = self.read(self.files[int(rng.integers(len(self.files)))])
        return cv2.resize(hole.astype(np.uint8), (size, size),
                          interpolation=cv2.INTER_NEAREST).astype(bool)


def random_masks(source: str, seed: int, min_ratio: float, max_ratio: float,
                 folder: str | None = None, hole: str = "white"):
    """The mask source that params name (``random_masks.*``)."""
    if source == "procedural":
        return ProceduralMasks(seed, min_ratio, max_ratio)
    if folder is None:
        raise MaskoptError("random_masks.source is folder but random_masks.folder is not set")
    return FolderMasks(folder, seed, hole)


class RandomMaskPairs(Dataset):
    """Training pairs for random-mask training: each item's hole is a random mask over
    I_G (the untouched background, so no pasted person is left outside the hole), its
    inputs and targets are those of I_G. Keys are those of the pairs' dataset: ``i`` or
    ``(i, epoch)``, and the mask is drawn for that pair and epoch."""

    def __init__(self, pairs: Dataset, masks):
        self.pairs, self.masks = pairs, masks
        self.taxonomy = pairs.taxonomy

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        item = self.pairs[key]
        size = item["target"].shape[-1]
        hole = torch.from_numpy(self.masks(index, epoch, size).astype(np.float32))[None]
        return {**item, "image": item["target"], "gray": item["target_gray"],
                "edges": item["target_edges"], "semantic": item["target_semantic"],
                "mask": hole}
