"""The paper-scale profile (params-coco.yaml) as the benchmarks build it: COCO's 134
panoptic classes and 80 thing classes, untrained networks (speed does not depend on the
weights), nothing downloaded. One place, so every benchmark times the networks a COCO
run trains (class_channels included; with `segmenter.weights: coco` the segmenter has
the COCO Mask R-CNN's frozen batch norms, not the GroupNorms of one trained from
scratch)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 134  # COCO panoptic: 133 categories + unlabeled
THINGS = 80


def paper_params(path: str | Path = ROOT / "params-coco.yaml", batch: int | None = None,
                 amp: bool | None = None):
    """Params of ``path`` with an untrained VGG19; ``batch``/``amp`` override every stage's.
    Build its segmenter with :func:`offline_segmenter_config`, which downloads nothing."""
    from maskopt.pipeline.params import Params

    data = yaml.safe_load(Path(path).read_text())
    data["inpainter"]["vgg_weights"] = "random"
    if amp is not None:
        data["train"]["amp"] = amp
    if batch is not None:
        for stage in ("segmentation", "inpainter", "joint"):
            data["train"][stage]["batch_size"] = batch
    return Params.model_validate(data)


def offline_segmenter_config(params) -> dict:
    """The profile's segmenter, built offline: the architecture its ``weights`` gives
    (frozen BN for pretrained starts), with those weights left unloaded."""
    from maskopt.models.build import segmenter_config as config_of

    return {**config_of(params, THINGS, CLASSES), "load_weights": False}


def paper_networks(params=None, device: str = "cpu"):
    """`remove`'s networks (``maskopt.models.inference.Networks``) at paper scale, in eval mode;
    ``Remover(networks=...)`` runs them as `maskopt remove` does."""
    import torch

    from maskopt.core.taxonomy import Taxonomy
    from maskopt.models.build import INPAINTERS, build, inpainter_config
    from maskopt.models.inference import Networks
    from maskopt.models.selection import box_margin

    params = params or paper_params()
    torch.manual_seed(0)
    segmenter = build(offline_segmenter_config(params)).to(device).eval()
    generators = [build(inpainter_config(params, k, CLASSES)).to(device).eval()
                  for k in INPAINTERS]
    size = params.synthesize.image_size
    return Networks(segmenter, *generators, size, CLASSES, Taxonomy(()),
                    params.inpainter.canny_sigma, box_margin(params.alpha, size))
