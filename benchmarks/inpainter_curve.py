"""Learning curve of the image inpainter: test PSNR on the ground-truth masks against
training steps, beside OpenCV Telea on the same masks.

Trains the image inpainter with the pretrain stage's own task (params.yaml, with any
``-S key=value`` overrides, e.g. ``-S loss.lambda_is=0``) and every ``--every`` steps
inpaints the test pairs inside M_G with the pretrained edge and segmentation
inpainters from ``models/`` supplying the guides — the evaluate stage's Table I row
d = 0. Needs `dvc repro pretrain_inpainter@edge pretrain_inpainter@segmentation`.

    .venv/bin/python benchmarks/inpainter_curve.py --steps 600 --every 100 [-S k=v ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import yaml

from maskopt.core.imaging import one_hot
from maskopt.data.pairs import PairDataset, batches
from maskopt.evaluation.image_metrics import psnr
from maskopt.models.build import build, inpainter_config, load_model, restore
from maskopt.models.inference import Networks, inpaint, opencv_inpaint
from maskopt.pipeline.params import Params, load_params
from maskopt.training.distributed import Context
from maskopt.training.loop import make_loader
from maskopt.training.tasks import InpainterTask


def with_overrides(params: Params, overrides: list[str]) -> Params:
    data = params.model_dump()
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        section = data
        for part in parents:
            section = section[part]
        section[leaf] = yaml.safe_load(value)
    return Params.model_validate(data)


@torch.no_grad()
def test_psnr(nets: Networks, test: PairDataset) -> tuple[float, float]:
    ours, telea = [], []
    for batch in batches(test, 16):
        seg = one_hot(batch["semantic"], nets.num_classes)  # I's labels, as the segmenter's
        ours += psnr(inpaint(nets, batch["image"], batch["mask"], seg), batch["target"]).tolist()
        telea += psnr(opencv_inpaint(batch["image"], batch["mask"], "telea"),
                      batch["target"]).tolist()
    return sum(ours) / len(ours), sum(telea) / len(telea)


def curve_arguments(description: str, steps: int, every: int, extra=None) -> tuple:
    """(args, params) of a learning-curve script: ``--steps``, ``--every`` and ``-S``
    overrides of params.yaml (``extra`` adds a script's own arguments to the parser);
    sets torch's threads and seed from the params."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--every", type=int, default=every)
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    if extra:
        extra(parser)
    args = parser.parse_args()
    params = with_overrides(load_params("params.yaml"), args.overrides)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    torch.manual_seed(params.seed)
    return args, params


def evaluation_points(task, loader, steps: int, every: int):
    """Train ``task`` for ``steps`` steps, yielding the step count every ``every`` steps
    and after the last one (where the caller evaluates)."""
    step, epoch = 0, 0
    while step < steps:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            task.step(batch)
            step += 1
            if step % every == 0 or step == steps:
                yield step
            if step >= steps:
                return
        epoch += 1


def main() -> None:
    args, params = curve_arguments(__doc__.splitlines()[0], 600, 100)
    ctx = Context(0, 1, 0, torch.device("cpu"))
    train = PairDataset("data/pairs/train", params.inpainter.canny_sigma, flip=True,
                        seed=params.seed)
    test = PairDataset("data/pairs/test", params.inpainter.canny_sigma)
    classes = train.taxonomy.num_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = InpainterTask("image", build(inpainter_config(params, "image", classes)), params,
                             ctx, classes)
    guides = {k: restore(load_model(f"models/inpainter_{k}.pt", f"pretrain_inpainter@{k}")
                         ["networks"]["generator"]).eval() for k in ("edge", "segmentation")}
    nets = Networks(None, guides["edge"], guides["segmentation"], task.generator, 0, classes,
                    train.taxonomy, params.inpainter.canny_sigma)
    loader = make_loader(train, ctx, params.train.inpainter.batch_size, params.train.workers,
                         params.seed)
    print(f"overrides: {args.overrides or 'none'}")
    print("| step | seconds | PSNR, GT mask | Telea, GT mask |\n|---|---|---|---|")
    started = time.perf_counter()
    for step in evaluation_points(task, loader, args.steps, args.every):
        task.generator.eval()
        ours, telea = test_psnr(nets, test)
        task.generator.train()
        print(f"| {step} | {time.perf_counter() - started:.0f} | {ours:.2f} | "
              f"{telea:.2f} |", flush=True)

if __name__ == "__main__":
    main()
