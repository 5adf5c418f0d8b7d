"""Images and masks as arrays and tensors, the same for training, evaluation and removal:
uint8 photos ↔ float tensors, grayscale and Canny edges, one-hot class maps. The signed
distance φ of a mask is in :mod:`maskopt.core.signed_distance`."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H×W×C uint8 → C×H×W float in [0, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255


def tensor_to_rgb(image: torch.Tensor) -> np.ndarray:
    """C×H×W in [0, 1] → H×W×C uint8 (the inverse of :func:`rgb_to_tensor`)."""
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
            ).round().astype(np.uint8)


def gray_and_edges(rgb: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Luminance in [0, 1] and Canny edges in {0, 1} of an H×W×3 uint8 image, as
    EdgeConnect computes them: scikit-image's ``rgb2gray`` and ``canny`` with Gaussian
    σ from params and its default hysteresis thresholds. Every caller uses this one
    function, so the edge inpainter always sees the same kind of edges."""
    gray = rgb2gray(np.asarray(rgb)).astype(np.float32)
    return gray, canny(gray, sigma=sigma).astype(np.float32)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N×H×W class indices → N×C×H×W one-hot floats."""
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def segmentation_colours(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices → N×3×H×W colours from a fixed palette, for grids."""
    rng = np.random.default_rng(7)
    palette = torch.from_numpy(rng.uniform(0.15, 1, (num_classes, 3)).astype(np.float32))
    palette[0] = 0
    return palette.to(labels.device)[labels].permute(0, 3, 1, 2)
