"""EdgeConnect's published networks (Nazeri et al. 2019), loaded from its own files.

Table V's "EdgeC" is EdgeConnect as its authors released it: an edge generator and an
inpainting generator (RGB + edges in; no segmentation channel), 64 channels wide with
8 dilated residual blocks. Their layout is maskopt's InpaintGenerator's at that width
(the edge generator spectral-normed), so a checkpoint loads by renaming its residual
blocks' ``conv_block`` to ``body``. A user with internet downloads a model folder
(e.g. Places2: ``EdgeModel_gen.pth`` and ``InpaintingModel_gen.pth``, each a dict with
the state under ``"generator"``) and names it in ``evaluate.edgeconnect_weights``.

It fills as EdgeConnect's test mode does: Canny (σ 2) of the known pixels only, the
edge generator's whole output as the inpainting generator's edges, holes white.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny
from torch import nn

from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import tensor_to_rgb
from maskopt.models.inpainter import InpaintGenerator, composite, mask_input

FILES = {"edge": "EdgeModel_gen.pth", "inpaint": "InpaintingModel_gen.pth"}
WIDTH, BLOCKS, CANNY_SIGMA = 64, 8, 2.0  # EdgeConnect's networks and its config's SIGMA


class EdgeConnect(nn.Module):
    def __init__(self):
        super().__init__()
        self.edge = InpaintGenerator(3, 1, WIDTH, BLOCKS, use_spectral_norm=True)
        self.inpaint = InpaintGenerator(4, 3, WIDTH, BLOCKS)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Fill the holes (``masks`` N×1×H×W, 1 = hole) of N×3×H×W images in [0, 1]."""
        gray, edges = known_edges(images, masks)
        edge_in = torch.cat([mask_input(gray, masks), edges * (1 - masks), masks], 1)
        predicted = torch.sigmoid(self.edge(edge_in))
        filled = self.inpaint(torch.cat([mask_input(images, masks), predicted], 1))
        return composite((torch.tanh(filled) + 1) / 2, images, masks)


def known_edges(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luminance and Canny edges of the known pixels (EdgeConnect's test-time edges)."""
    grays, edges = [], []
    for image, mask in zip(images, masks, strict=True):
        gray = rgb2gray(tensor_to_rgb(image)).astype(np.float32)
        known = mask[0].cpu().numpy() < 0.5
        grays.append(torch.from_numpy(gray))
        edges.append(torch.from_numpy(canny(gray, sigma=CANNY_SIGMA, mask=known)
                                      .astype(np.float32)))
    return (torch.stack(grays)[:, None].to(images.device),
            torch.stack(edges)[:, None].to(images.device))


def edgeconnect_state(state: dict) -> dict:
    """An EdgeConnect generator's state under maskopt's names."""
    return {key.replace(".conv_block.", ".body."): value for key, value in state.items()}


def load_edgeconnect(folder: str | Path, device="cpu") -> EdgeConnect:
    """EdgeConnect from a folder of its checkpoints; every layer must come from them."""
    folder = Path(folder)
    model = EdgeConnect()
    for part, name in FILES.items():
        path = folder / name
        if not path.is_file():
            raise MaskoptError(f"{path}: EdgeConnect checkpoint missing (a model folder "
                               f"holds {' and '.join(FILES.values())})")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            state = edgeconnect_state(saved["generator"])
        except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
            raise MaskoptError(f"{path}: not an EdgeConnect generator checkpoint (no "
                               f"'generator' state: {type(exc).__name__})") from None
        network = getattr(model, part)
        own = network.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
        if missing or extra or shapes:
            raise MaskoptError(f"{path}: does not fit EdgeConnect's {part} generator "
                               f"(missing {missing[:3]}, unexpected {extra[:3]}, other "
                               f"shape {shapes[:3]}); nothing was loaded")
        network.load_state_dict(state)
    return model.eval().to(device)
