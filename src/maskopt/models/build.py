"""Build the networks from params, and save/load them as self-describing model files.

A model file holds the constructor arguments beside the weights, so `maskopt remove`
rebuilds the networks without params.yaml. Files are read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from maskopt.core.errors import MaskoptError
from maskopt.core.io import atomic_path
from maskopt.models.inpainter import PatchDiscriminator
from maskopt.models.inpainter_kinds import KINDS

if TYPE_CHECKING:  # only a type here: pydantic stays out of `maskopt remove`'s imports
    from maskopt.pipeline.params import Params

INPAINTERS = tuple(KINDS)  # edge, segmentation, image: the order they inpaint in


def segmenter_config(params: Params, num_things: int, num_classes: int,
                     thing_category_ids: list[int] | None = None,
                     categories: list[dict] | None = None) -> dict:
    """``thing_category_ids``: COCO category id of thing labels 1..K (COCO weights need
    it); ``categories``: the taxonomy's, which the detectron2 backend maps its semantic
    head's classes with."""
    s = params.segmenter
    detectron2 = {"categories": categories, "input_sizes_train": s.input_sizes_train,
                  "input_size_test": s.input_size_test, "input_max_size": s.input_max_size}
    return {**(detectron2 if s.backend == "detectron2" else {}),
            "kind": "segmenter", "backend": s.backend, "num_thing_classes": num_things,
            "num_semantic_classes": num_classes, "thing_category_ids": thing_category_ids,
            "depth": s.depth,
            "fpn_channels": s.fpn_channels, "image_size": params.synthesize.image_size,
            "weights": s.weights, "box_batch_size": s.box_batch_size,
            "detections_per_image": s.detections_per_image,
            "grown_box_margin": s.grown_box_margin,
            "proposals": {"training": s.proposals_train, "testing": s.proposals_test},
            "anchor_sizes": s.anchor_sizes, "freeze_at": s.freeze_at,
            "stem_stride": s.stem_stride, "mask_resolution": s.mask_resolution,
            "mask_head_channels": s.mask_head_channels}


def inpainter_config(params: Params, kind: str, num_classes: int) -> dict:
    if kind not in INPAINTERS:
        raise MaskoptError(f"unknown inpainter {kind!r} (one of {', '.join(INPAINTERS)})")
    p = params.inpainter
    return KINDS[kind].config(num_classes, p.width, p.blocks, p.class_channels)


def build(config: dict) -> nn.Module:
    """A network from its config (see the functions above)."""
    kwargs = {k: v for k, v in config.items() if k not in ("kind", "backend")}
    kind = config["kind"]
    if kind == "segmenter":
        if config.get("backend") == "detectron2":
            from maskopt.models.detectron2_backend import Detectron2PanopticFPN

            return Detectron2PanopticFPN(**kwargs)
        # imported here: torchvision's import is much of a stage's start-up, and
        # the stages that train an inpainter alone never build a segmenter
        from maskopt.models.segmenter import PanopticFPN

        return PanopticFPN(**kwargs)
    if kind in KINDS:
        return KINDS[kind].build(config)
    if kind == "discriminator":
        return PatchDiscriminator(**kwargs)
    raise MaskoptError(f"unknown network kind {kind!r}")


def build_discriminator(kind: str, num_classes: int, width: int) -> PatchDiscriminator:
    """The discriminator of an inpainter kind, on what that kind's D sees."""
    return PatchDiscriminator(KINDS[kind].discriminator_channels(num_classes), width)


def save_model(path: str | Path, networks: dict[str, tuple[dict, nn.Module]], **extra) -> None:
    """Write {name: (config, module)} to one file atomically."""
    payload = {"networks": {name: {"config": cfg, "state_dict": module.state_dict()}
                            for name, (cfg, module) in networks.items()}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, made_by: str, map_location="cpu") -> dict:
    """Read a model file; a missing one names the DVC stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise MaskoptError(f"{path}: model not found; run `dvc repro {made_by}` to make it")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise MaskoptError(f"{path}: not a readable maskopt model file (torch cannot read it "
                           f"as saved weights: {_first_reason(exc)})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("networks"), dict):
        raise MaskoptError(f"{path}: not a maskopt model file (it holds no networks)")
    return saved


def _first_reason(exc: Exception) -> str:
    """The line of a torch.load error that says what is wrong (its text is a page)."""
    text = str(exc)
    detail = text.partition("WeightsUnpickler error:")[2] or text
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def restore(entry: dict, expected: dict | None = None, source: str = "model") -> nn.Module:
    """Rebuild a network from a saved entry; refuse one whose shape differs from ``expected``."""
    config = entry["config"]
    if expected is not None:
        differ = {k: (config.get(k), v) for k, v in expected.items()
                  if k != "weights" and config.get(k) != v}
        if differ:
            details = ", ".join(f"{k}: saved {a!r}, params {b!r}" for k, (a, b) in differ.items())
            raise MaskoptError(f"{source}: saved {config['kind']} network does not match the "
                               f"params ({details}); rerun the stage that makes it")
    module = build({**config, "load_weights": False} if config["kind"] == "segmenter" else config)
    load_state(module, entry["state_dict"], source)
    return module


def load_state(module: nn.Module, state: dict, source: str) -> None:
    own = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(state))
    if wrong or missing:
        problem = (f"shape mismatch in {', '.join(wrong[:3])}" if wrong
                   else f"missing {', '.join(missing[:3])}")
        raise MaskoptError(f"{source}: checkpoint does not fit the network ({problem})")
    module.load_state_dict(state)


def describe_model(path: str | Path) -> str:
    """What a model file holds and how it was trained, as lines for `maskopt info`."""
    path = Path(path)
    saved = load_model(path, "train_joint")
    lines = [f"{path} ({path.stat().st_size / 2**20:.1f} MiB)"]
    for name, entry in saved["networks"].items():
        config = entry["config"]
        size = sum(t.numel() for t in entry["state_dict"].values() if torch.is_tensor(t))
        shape = {k: v for k, v in config.items()
                 if k in ("depth", "fpn_channels", "width", "blocks", "image_size")}
        lines.append(f"  {name:<13} {config['kind']:<13} {size / 1e6:6.2f} M values  "
                     + " ".join(f"{k}={v}" for k, v in shape.items()))
    for key in ("alpha", "box_margin", "mask_expansion", "canny_sigma"):
        if key in saved:
            lines.append(f"  {key}: {saved[key]}")
    if saved.get("taxonomy"):
        things = [c["name"] for c in saved["taxonomy"] if c.get("isthing")]
        lines.append(f"  classes: {len(saved['taxonomy'])} ({len(things)} things: "
                     f"{', '.join(things[:8])}{', …' if len(things) > 8 else ''})")
    profile = saved.get("trained_on")
    if profile is None:
        lines.append("  trained on: not recorded (a file from an older maskopt)")
    else:
        steps = ", ".join(f"{k} {v}" for k, v in profile.get("steps", {}).items())
        lines.append(f"  trained on: {profile.get('data_source')} data, "
                     f"{profile.get('image_size')} px, {profile.get('train_pairs')} pairs, "
                     f"seed {profile.get('seed')}, "
                     f"{profile.get('precision', 'precision not recorded')}; steps: {steps}")
        if profile.get("data_source") == "sample":
            lines.append("  note: the synthetic sample profile, a demo of the method; "
                         "real photos need the COCO profile (params-coco.yaml)")
    return "\n".join(lines)
