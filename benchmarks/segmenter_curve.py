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
"""

from __future__ import annotations

import itertools
import time
import warnings

import torch
from inpainter_curve import curve_arguments, evaluation_points

from maskopt.data.pairs import FirstPairs, PairDataset
from maskopt.evaluation.masks import mask_quality
from maskopt.models.build import build, segmenter_config
from maskopt.models.selection import box_margin
from maskopt.training.distributed import Context
from maskopt.training.loop import make_loader
from maskopt.training.tasks import SegmentationTask


def main() -> None:
    args, params = curve_arguments(__doc__.splitlines()[0], 1000, 250)
    ctx = Context(0, 1, 0, torch.device("cpu"))
    train = PairDataset("data/pairs/train", params.inpainter.canny_sigma, flip=True,
                        seed=params.seed, cache=params.train.cache_pairs)
    first = FirstPairs(PairDataset("data/pairs/train", params.inpainter.canny_sigma), 100)
    test = PairDataset("data/pairs/test", params.inpainter.canny_sigma)
    tax = train.taxonomy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = SegmentationTask(build(segmenter_config(params, tax.num_things, tax.num_classes,
                                                       tax.thing_category_ids)), params, ctx)
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
