"""The sample's pretrained ("zoo") segmenter, installed with the package.

The paper starts PanopticFPN from weights trained elsewhere, on more data, for longer.
The sample does the same with ``src/maskopt/zoo/sample_segmenter.pt``: a segmenter
trained by ``make zoo`` (training/zoo.py) on procedural scenes no sample split uses,
stored in half precision beside ``record.json`` (its sha256, recipe and curve).
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import torch
from torch import nn

from maskopt.core.errors import MaskoptError

ZOO_FOLDER = "zoo"
SAMPLE_SEGMENTER = "sample_segmenter.pt"
# what decides the shape of the weights (and where the anchors sit): a zoo file made
# with other values cannot start this segmenter
SHAPE_KEYS = ("num_thing_classes", "num_semantic_classes", "depth", "fpn_channels",
              "image_size", "anchor_sizes", "stem_stride", "mask_head_channels")


def zoo_file(name: str = SAMPLE_SEGMENTER):
    return resources.files("maskopt") / ZOO_FOLDER / name


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_zoo_segmenter(module: nn.Module, shape: dict, path=None) -> dict:
    """Load the zoo's weights into ``module`` (built with ``shape``: see SHAPE_KEYS),
    in fp32 (``path``: another zoo file than the package's). Refuses, naming the
    setting, a zoo file made for another shape; a file that does not fill every layer
    loads nothing. Returns the load report."""
    path = zoo_file() if path is None else path
    if not path.is_file():
        raise MaskoptError(f"{path}: the sample's zoo segmenter is missing; run `make zoo` "
                           "to make it, or set segmenter.weights: none")
    data = path.read_bytes()
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        entry = saved["networks"]["segmenter"]
        config, state = entry["config"], entry["state_dict"]
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise MaskoptError(f"{path}: not a zoo segmenter file ({type(exc).__name__})") from None
    differ = [f"{k} {config.get(k)!r} (params: {shape.get(k)!r})" for k in SHAPE_KEYS
              if config.get(k) != shape.get(k)]
    if differ:
        raise MaskoptError(f"{path}: the zoo segmenter was made with {', '.join(differ)}; "
                           "set those params back, rebuild it with `make zoo`, or set "
                           "segmenter.weights: none")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise MaskoptError(f"{path}: does not fit the segmenter (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}, other shape {wrong[:3]}); "
                           "nothing was loaded")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return {"file": str(path), "sha256": sha256_of(data), "loaded": len(state),
            "random": 0}
