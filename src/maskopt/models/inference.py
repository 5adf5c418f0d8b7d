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

from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import gray_and_edges, tensor_to_rgb
from maskopt.core.taxonomy import Taxonomy
from maskopt.models.build import load_model, restore
from maskopt.models.fast_inference import optimize_for_inference
from maskopt.models.inpainter import composite, guides_in_order
from maskopt.models.selection import box_margin

JOINT_NETWORKS = ("segmenter", "edge", "segmentation", "image")  # in a joint model file

@dataclass
class Networks:
    """A segmenter and the three inpainters, ready for inference.

    ``box_margin`` is the px margin of the selected segment's box for its mask (see
    :func:`maskopt.models.selection.box_margin`): the joint model's own, 0 for the
    pretrained segmenter, which never learned to paint beyond its box.
    """

    segmenter: nn.Module
    edge: nn.Module
    segmentation: nn.Module
    image: nn.Module
    image_size: int
    num_classes: int
    taxonomy: Taxonomy
    canny_sigma: float = 1.0
    box_margin: float = 0.0
    trained_on: dict | None = None  # the training profile stored in the file, if any

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             made_by: str = "train_joint", canny_sigma: float | None = None) -> Networks:
        """The joint model file (all four networks in one)."""
        saved = load_model(path, made_by)
        held = sorted(saved["networks"])
        if not set(JOINT_NETWORKS) <= set(held):
            raise MaskoptError(f"{path}: not a joint model (it holds {', '.join(held)}; a "
                               f"joint model holds {', '.join(JOINT_NETWORKS)}); use the "
                               f"file `dvc repro {made_by}` writes, models/joint.pt")
        nets = {name: restore(entry, source=str(path)).to(device).eval()
                for name, entry in saved["networks"].items()}
        config = saved["networks"]["segmenter"]["config"]
        taxonomy = Taxonomy(tuple(saved.get("taxonomy", [])))
        sigma = canny_sigma if canny_sigma is not None else saved.get("canny_sigma", 1.0)
        margin = saved.get("box_margin", box_margin(saved.get("alpha", 0.0),
                                                    config["image_size"]))
        return cls(nets["segmenter"], nets["edge"], nets["segmentation"], nets["image"],
                   config["image_size"], config["num_semantic_classes"], taxonomy, sigma,
                   margin, saved.get("trained_on"))

    @classmethod
    def load_pretrained(cls, segmenter_file: str | Path, inpainter_files: dict[str, Path],
                        canny_sigma: float, device: str | torch.device = "cpu",
                        made_by: str = "pretrain_inpainter") -> Networks:
        """The paper's starting point: the pretrained segmenter and the three pretrained
        inpainters, before joint training (``made_by``: the stage that makes them)."""
        saved = load_model(segmenter_file, "pretrain_segmentation")
        entry = saved["networks"]["segmenter"]
        segmenter = restore(entry, source=str(segmenter_file)).to(device).eval()
        inpainters = {}
        for kind, path in inpainter_files.items():
            generator = load_model(path, f"{made_by}@{kind}")["networks"]["generator"]
            inpainters[kind] = restore(generator, source=str(path)).to(device).eval()
        return cls(segmenter, inpainters["edge"], inpainters["segmentation"],
                   inpainters["image"], entry["config"]["image_size"],
                   entry["config"]["num_semantic_classes"],
                   Taxonomy(tuple(saved.get("taxonomy", []))), canny_sigma, 0.0)

    @property
    def device(self) -> torch.device:
        return next(self.image.parameters()).device


def hold_for_inference(*networks: Networks) -> None:
    """Hold loaded networks as `maskopt remove` holds them in fp32 (maskopt.models.
    fast_inference): what an evaluation scores is what a removal computes. Each module
    is changed once (the fine-tuned rows share the random-mask guides' networks)."""
    modules = {id(m): m for nets in networks
               for m in (nets.segmenter, nets.edge, nets.segmentation, nets.image)}
    optimize_for_inference(list(modules.values()), channels_last=False)


def image_guides(images: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Luminance and Canny edges of N×3×H×W images, by the training data's function."""
    grays, edges = [], []
    for image in images:
        gray, edge = gray_and_edges(tensor_to_rgb(image), sigma)
        grays.append(torch.from_numpy(gray))
        edges.append(torch.from_numpy(edge))
    return (torch.stack(grays)[:, None].to(images.device),
            torch.stack(edges)[:, None].to(images.device))


@torch.no_grad()
def inpaint_guides(nets: Networks, images: torch.Tensor, masks: torch.Tensor,
                   semantic_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The edge and segmentation inpainters' composites with binary ``masks``: what the
    image inpainter is guided by."""
    gray, edges = image_guides(images, nets.canny_sigma)
    return guides_in_order(nets.edge, nets.segmentation, gray, edges, semantic_probs, masks)


@torch.no_grad()
def inpaint(nets: Networks, images: torch.Tensor, masks: torch.Tensor,
            semantic_probs: torch.Tensor,
            guides: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Edge → segmentation → image inpainting with binary ``masks``; known pixels kept
    exactly (the same chain as joint training's). ``guides``: :func:`inpaint_guides`
    of the same networks, images, masks and classes, where they were made already."""
    edges, classes = guides or inpaint_guides(nets, images, masks, semantic_probs)
    return composite(nets.image(images, edges, classes, masks), images, masks)


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
