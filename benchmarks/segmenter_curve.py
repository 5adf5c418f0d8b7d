"""Learning curve of the segmenter: how much of the person its selected mask covers,
against training steps.

Trains PanopticFPN with the pretrain stage's own task (params.yaml, with any
``-S key=value`` overrides, e.g. ``-S train.segmentation.lr=0.001``) and every
``--every`` steps selects, for each pair, the segment overlapping M_G most, as the
evaluate stage does (its mask on the box grown by the joint model's margin), and prints
its coverage of M_G and its precision on the first 100 training pairs (what the
sample's step count is chosen from) and on the test pairs (reported beside them, not
chosen on), from step 0 (the start: the zoo's weights with segmenter.weights:
sample-zoo). Needs `dvc repro synthesize`.

    .venv/bin/python benchmarks/segmenter_curve.py --steps 2000 --every 250 [-S k=v ...]

Probes of the mask head (docs/results.md) train on the zoo's own pairs (``--pairs
zoo/work/pairs``, after `make zoo`) and are scored on its held-out ones. ``--zoo-layers``
starts a segmenter whose shape differs from the zoo's (e.g. ``-S
segmenter.mask_head_channels=128`` or ``-S segmenter.stem_stride=2``) from every zoo
layer that fits it; the others start random, and it says how many.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings
from pathlib import Path

import torch
from inpainter_curve import curve_arguments, evaluation_points

from maskopt.data.pairs import FirstPairs, PairDataset
from maskopt.evaluation.masks import mask_quality
from maskopt.models.build import build, segmenter_config
from maskopt.models.selection import box_margin
from maskopt.models.zoo_weights import zoo_file
from maskopt.training.distributed import Context
from maskopt.training.loop import make_loader
from maskopt.training.tasks import SegmentationTask


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, default=Path("data/pairs"),
                        help="folder with train/ and test/ pairs")
    parser.add_argument("--zoo-layers", action="store_true",
                        help="start from the zoo's layers that fit, the rest random")


def zoo_layers_that_fit(segmenter: torch.nn.Module) -> str:
    """Copy into ``segmenter`` every zoo tensor of the same name and shape."""
    saved = torch.load(zoo_file(), map_location="cpu", weights_only=True)
    state = saved["networks"]["segmenter"]["state_dict"]
    own = segmenter.state_dict()
    fits = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape}
    segmenter.load_state_dict(fits, strict=False)
    return f"zoo layers: {len(fits)} of {len(own)} tensors loaded, the rest random"


def main() -> None:
    args, params = curve_arguments(__doc__.splitlines()[0], 1000, 250, extra=_probe_arguments)
    ctx = Context(0, 1, 0, torch.device("cpu"))
    sigma = params.inpainter.canny_sigma
    train = PairDataset(args.pairs / "train", sigma, flip=True, seed=params.seed,
                        cache=params.train.cache_pairs)
    first = FirstPairs(PairDataset(args.pairs / "train", sigma), 100)
    test = PairDataset(args.pairs / "test", sigma)
    tax = train.taxonomy
    config = segmenter_config(params, tax.num_things, tax.num_classes, tax.thing_category_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.zoo_layers:
            segmenter = build({**config, "weights": "none"})
            print(zoo_layers_that_fit(segmenter))
        else:
            segmenter = build(config)
        task = SegmentationTask(segmenter, params, ctx)
    margin = box_margin(params.alpha, params.synthesize.image_size)
    loader = make_loader(train, ctx, params.train.segmentation.batch_size,
                         params.train.workers, params.seed)
    print(f"overrides: {args.overrides or 'none'}; mask on the box grown by {margin} px")
    print("| step | seconds | coverage, train | precision, train | coverage, test | "
          "precision, test | no segment, test |\n|---|---|---|---|---|---|---|")
    started, evaluating = time.perf_counter(), 0.0
    # step 0: where it starts (the zoo's weights, with segmenter.weights: sample-zoo)
    for step in itertools.chain([0], evaluation_points(task, loader, args.steps, args.every)):
        paused = time.perf_counter()
        training = paused - started - evaluating
        seen = mask_quality(task.segmenter, first, margin)
        held = mask_quality(task.segmenter, test, margin)
        task.segmenter.train()
        evaluating += time.perf_counter() - paused
        print(f"| {step} | {training:.0f} | {seen['coverage']:.3f} | {seen['precision']:.3f} | "
              f"{held['coverage']:.3f} | {held['precision']:.3f} | {held['no_segment']:.2f} |",
              flush=True)

if __name__ == "__main__":
    main()
