"""Where `maskopt remove` and `maskopt info` find a model when none is named.

Kept free of torch so that a missing model is reported before the slow imports.
"""

from __future__ import annotations

import os
from pathlib import Path

from maskopt.core.errors import MaskoptError

MODEL_ENV = "MASKOPT_MODELS"   # a model file, or a folder holding joint.pt
MODEL_NAME = "joint.pt"


def _installed_project() -> Path | None:
    """The project this package was installed from (an editable install's checkout)."""
    root = Path(__file__).resolve().parents[3]  # src/maskopt/removal/locate.py
    return root if (root / "dvc.yaml").exists() else None


def model_candidates(explicit: str | Path | None = None) -> list[Path]:
    """The places looked at: ``--models`` if given, else $MASKOPT_MODELS if set (each a
    file, or a folder holding joint.pt: only that place); else ./models/joint.pt, then
    models/joint.pt of the project maskopt was installed from."""
    named = explicit if explicit is not None else os.environ.get(MODEL_ENV) or None
    if named is not None:
        path = Path(named)
        return [path / MODEL_NAME if path.is_dir() else path]
    places = [Path("models") / MODEL_NAME]
    project = _installed_project()
    if project is not None:
        places.append(project / "models" / MODEL_NAME)
    unique = []
    for place in places:
        if not any(place.resolve() == seen.resolve() for seen in unique):
            unique.append(place)
    return unique


def find_model(explicit: str | Path | None = None) -> Path:
    places = model_candidates(explicit)
    for place in places:
        if place.is_file():
            return place
    looked = ", ".join(str(p) for p in places)
    raise MaskoptError(f"no model found (looked at: {looked}); train one with `dvc repro "
                       f"train_joint`, or name a model file (--models FILE, or {MODEL_ENV})")


PRETRAINED_NAME = "segmenter.pt"


def pretrained_segmenter_beside(model: Path, required: bool = False) -> Path | None:
    """models/segmenter.pt beside the joint model: the segmenter before joint training."""
    path = model.with_name(PRETRAINED_NAME)
    if path.is_file():
        return path
    if required:
        raise MaskoptError(f"--learned-margin off needs the pretrained segmenter, {path}, "
                           "which is not there (`dvc repro pretrain_segmentation` makes it)")
    return None
