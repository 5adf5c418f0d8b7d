"""Images and masks as arrays and tensors, the same for training, evaluation and removal:
uint8 photos ↔ float tensors, grayscale and Canny edges, one-hot class maps, and the
signed distance φ of a mask."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.color import rgb2gray
from skimage.feature import canny

from maskopt.errors import MaskoptError


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


def normalized_signed_distance(gt_mask: np.ndarray) -> np.ndarray:
    """φ for one binary mask: signed distance to its boundary, negative inside, in [-1, 1].

    Distances are Euclidean, in pixels, measured from pixel centres: an outside pixel
    gets its distance to the nearest object pixel, an inside pixel minus (its distance
    to the nearest background pixel - 1), so both pixels at the boundary are ~0. They
    are divided by the image's longer side and clipped to [-1, 1]. Hence α is a band
    width as a fraction of the image side: α = 0.03 pulls in the pixels less than
    0.03 × 256 = 7.7 px outside the object at 256 px (1.9 px at 64 px).
    """
    gt = np.asarray(gt_mask, bool)
    if gt.ndim != 2:
        raise MaskoptError(f"mask must be 2-D, got shape {gt.shape}")
    side = max(gt.shape)
    if not gt.any():  # nothing to remove: every pixel is "outside" and pushed out
        return np.ones(gt.shape, np.float32)
    outside = ndimage.distance_transform_edt(~gt)
    inside = ndimage.distance_transform_edt(gt)
    phi = np.where(gt, -(inside - 1), outside) / side
    return np.clip(phi, -1, 1).astype(np.float32)
