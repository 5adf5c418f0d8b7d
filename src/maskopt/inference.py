"""Run trained networks: segment, pick a segment, inpaint with a given mask.

Shared by the evaluate stage and `maskopt remove`. Images are N×3×S×S in [0, 1] at
the networks' size S; masks are N×1×S×S in {0, 1} (1 = remove).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from maskopt.models.build import load_model, restore
from maskopt.models.inpainter import composite
from maskopt.training.data import Taxonomy, canny_edges, tensor_to_rgb


@dataclass
class Networks:
    """The trained segmenter and the three inpainters, ready for inference."""

    segmenter: nn.Module
    edge: nn.Module
    segmentation: nn.Module
    image: nn.Module
    image_size: int
    num_classes: int
    taxonomy: Taxonomy
    canny_sigma: float = 1.0

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             made_by: str = "train_joint", canny_sigma: float | None = None) -> Networks:
        saved = load_model(path, made_by)
        nets = {name: restore(entry, source=str(path)).to(device).eval()
                for name, entry in saved["networks"].items()}
        config = saved["networks"]["segmenter"]["config"]
        taxonomy = Taxonomy(tuple(saved.get("taxonomy", [])))
        sigma = canny_sigma if canny_sigma is not None else saved.get("canny_sigma", 1.0)
        return cls(nets["segmenter"], nets["edge"], nets["segmentation"], nets["image"],
                   config["image_size"], config["num_semantic_classes"], taxonomy, sigma)

    @property
    def device(self) -> torch.device:
        return next(self.image.parameters()).device


def gray_and_edges(images: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma and Canny edges (as in training: OpenCV on uint8) of N×3×H×W images."""
    grays, edges = [], []
    for image in images:
        gray = cv2.cvtColor(tensor_to_rgb(image), cv2.COLOR_RGB2GRAY)
        grays.append(torch.from_numpy(gray.astype(np.float32) / 255))
        edges.append(torch.from_numpy(canny_edges(gray, sigma)))
    return (torch.stack(grays)[:, None].to(images.device),
            torch.stack(edges)[:, None].to(images.device))


@torch.no_grad()
def inpaint(nets: Networks, images: torch.Tensor, masks: torch.Tensor,
            semantic_probs: torch.Tensor) -> torch.Tensor:
    """Edge → segmentation → image inpainting with ``masks``; known pixels kept exactly."""
    gray, edges = gray_and_edges(images, nets.canny_sigma)
    edges_in = composite(nets.edge(gray, edges, masks), edges, masks)
    seg = composite(torch.softmax(nets.segmentation(semantic_probs, masks), 1), semantic_probs,
                    masks)
    return composite(nets.image(images, edges_in, seg, masks), images, masks)


def opencv_inpaint(images: torch.Tensor, masks: torch.Tensor, method: str,
                   radius: int = 3) -> torch.Tensor:
    """OpenCV's classical inpainting (Telea or Navier-Stokes) on the same masks."""
    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    out = []
    for image, mask in zip(images, masks, strict=True):
        hole = (mask[0].cpu().numpy() > 0.5).astype(np.uint8) * 255
        filled = cv2.inpaint(tensor_to_rgb(image), hole, radius, flag)
        out.append(torch.from_numpy(filled).permute(2, 0, 1).float() / 255)
    return torch.stack(out).to(images.device)


def grow_mask(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (< 0) binary N×1×H×W masks with a disc, as in Table I."""
    if pixels == 0:
        return masks.clone()
    size = 2 * abs(pixels) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    op = cv2.dilate if pixels > 0 else cv2.erode
    out = [torch.from_numpy(op((m[0].cpu().numpy() > 0.5).astype(np.uint8), disc))
           for m in masks]
    return torch.stack(out)[:, None].float().to(masks.device)
