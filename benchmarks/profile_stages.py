"""Where each training stage spends a step on this CPU, with the stages' own task code.

For every training stage (segmenter, three inpainters, joint) this runs the stage's
task (`maskopt.training.tasks`) on the synthesized training pairs with the params of
params.yaml and prints, per step: the wait for the data loader, the forward time of
each network (segmenter, generators, discriminators, VGG19 — measured with forward
hooks, summed over repeated calls), and the rest of the step (backward passes,
optimizer steps, loss arithmetic). Networks start from fresh weights, or with
`--trained` from the pipeline's models: the segmenter's step depends on them, since its
mask head trains on every sampled box that overlaps a person, and an untrained RPN
finds few (benchmarks/README.md).
Needs `data/pairs` (run `dvc repro synthesize` first), and `--trained` the models. Run
it on an idle machine.

    .venv/bin/python benchmarks/profile_stages.py [--steps 10] [--params params.yaml] \
        [--ops] [--trained]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import torch

from maskopt.core.device import to_device
from maskopt.data.pairs import PairDataset
from maskopt.models.build import (
    INPAINTERS,
    build,
    build_discriminator,
    inpainter_config,
    load_model,
    segmenter_config,
)
from maskopt.pipeline.layout import SEGMENTER_FILE, inpainter_file
from maskopt.pipeline.params import load_params
from maskopt.training.distributed import Context
from maskopt.training.loop import make_loader
from maskopt.training.tasks import InpainterTask, JointTask, SegmentationTask


class _Restore:
    """Undo a method wrapped by ``forward_timer``, like a hook handle."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def remove(self):
        delattr(self.module, self.name)


def forward_timer(modules: dict[str, torch.nn.Module], spent: dict[str, float]) -> list:
    """Hooks that add each module's forward wall time to ``spent[name]`` (for the
    segmenter also its ``losses_and_detections``, which joint training calls)."""
    handles = []
    for name, module in modules.items():
        if hasattr(module, "losses_and_detections"):
            def timed(*args, _call=module.losses_and_detections, _name=name, **kwargs):
                started = time.perf_counter()
                result = _call(*args, **kwargs)
                spent[_name] += time.perf_counter() - started
                return result
            module.losses_and_detections = timed
            handles.append(_Restore(module, "losses_and_detections"))
        started = []
        handles.append(module.register_forward_pre_hook(
            lambda *_, s=started: s.append(time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda *_, s=started, n=name: spent.__setitem__(
                n, spent[n] + time.perf_counter() - s.pop())))
    return handles


def make_tasks(params, dataset: PairDataset, ctx: Context) -> dict:
    tax = dataset.taxonomy
    seg_config = segmenter_config(params, tax.num_things, tax.num_classes, tax.thing_category_ids)
    tasks = {"pretrain_segmentation": lambda: SegmentationTask(build(seg_config), params, ctx)}
    for kind in INPAINTERS:
        tasks[f"pretrain_inpainter@{kind}"] = lambda kind=kind: InpainterTask(
            kind, build(inpainter_config(params, kind, tax.num_classes)), params, ctx,
            tax.num_classes)

    def joint():
        generators = {k: build(inpainter_config(params, k, tax.num_classes)) for k in INPAINTERS}
        discriminators = {k: build_discriminator(k, tax.num_classes, params.inpainter.width)
                          for k in INPAINTERS}
        return JointTask(build(seg_config), generators, discriminators, params, ctx,
                         tax.num_classes)

    tasks["train_joint"] = joint
    return tasks


def load_trained(task) -> None:
    """Give a task the pipeline's trained weights (models/). From scratch, the RPN finds
    few boxes that overlap a person, so the mask head trains on a fraction of the RoIs
    it gets once the segmenter has learned: an untrained step is not a typical one."""
    def weights(path, made_by, network="generator"):
        return load_model(path, made_by)["networks"][network]["state_dict"]

    if hasattr(task, "segmenter"):
        task.segmenter.load_state_dict(weights(SEGMENTER_FILE, "pretrain_segmentation",
                                               "segmenter"))
    nets = {task.kind.name: (task.generator, task.discriminator)} if hasattr(task, "generator") \
        else {k: (task.g[k], task.d[k]) for k in getattr(task, "g", {})}
    for kind, (generator, discriminator) in nets.items():
        path = inpainter_file(kind)
        generator.load_state_dict(weights(path, f"pretrain_inpainter@{kind}"))
        discriminator.load_state_dict(weights(path, f"pretrain_inpainter@{kind}",
                                              "discriminator"))


def components(task) -> dict[str, torch.nn.Module]:
    found = {}
    if hasattr(task, "segmenter"):
        found["segmenter"] = task.segmenter
    if hasattr(task, "generator"):
        found["generator"] = task.generator
        found["discriminator"] = task.discriminator
    for kind, g in getattr(task, "g", {}).items():
        found[f"generator {kind}"] = g
    for kind, d in getattr(task, "d", {}).items():
        found[f"discriminator {kind}"] = d
    if getattr(task, "vgg", None) is not None:
        found["VGG19"] = task.vgg
    return found


def top_ops(task, loader, steps: int, rows: int = 15) -> None:
    """torch.profiler's view of ``steps`` steps: the operators that take the most CPU
    time (this is how torchvision's single-threaded RoIAlign backward showed up)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    batches = [to_device(batch, task.ctx.device)
               for batch, _ in zip(loader, range(steps + 2), strict=False)]
    for batch in batches[:2]:  # warm-up
        task.step(batch)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[2:]:
            task.step(batch)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def profile(name: str, task, loader, steps: int, batch_size: int) -> None:
    spent: dict[str, float] = defaultdict(float)
    batches = iter(loader)
    for _ in range(2):  # warm-up
        task.step(to_device(next(batches), task.ctx.device))
    handles = forward_timer(components(task), spent)
    data = total = 0.0
    for _ in range(steps):
        started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        fetched = time.perf_counter()
        task.step(to_device(batch, task.ctx.device))
        data += fetched - started
        total += time.perf_counter() - started
    for handle in handles:
        handle.remove()
    forward = sum(spent.values())
    parts = {"data loader wait": data, **{f"{k} forward": v for k, v in spent.items()},
             "backward + optimizer + rest": total - data - forward}
    print(f"\n{name}: {total / steps:.3f} s/step, batch {batch_size} "
          f"({batch_size * steps / total:.1f} pairs/s)")
    for part, seconds in parts.items():
        print(f"  {part:<34} {seconds / steps:7.3f} s  {100 * seconds / total:5.1f} %")


def made(make, trained: bool):
    task = make()
    if trained:
        load_trained(task)
    return task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--only", default=None, help="one stage name")
    parser.add_argument("--ops", action="store_true",
                        help="also print torch.profiler's top operators per stage")
    parser.add_argument("--trained", action="store_true",
                        help="start from the pipeline's trained models (needs `dvc repro`)")
    args = parser.parse_args()
    params = load_params(args.params)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    ctx = Context(0, 1, 0, torch.device("cpu"))
    dataset = PairDataset("data/pairs/train", params.inpainter.canny_sigma, flip=True,
                          cache=params.train.cache_pairs)
    print(f"{params.synthesize.image_size} px, inpainter width {params.inpainter.width}, "
          f"{torch.get_num_threads()} threads, {params.train.workers} loader workers")
    schedules = {"pretrain_segmentation": params.train.segmentation,
                 "train_joint": params.train.joint}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in make_tasks(params, dataset, ctx).items():
            if args.only and name != args.only:
                continue
            batch_size = schedules.get(name, params.train.inpainter).batch_size
            loader = make_loader(dataset, ctx, batch_size, params.train.workers, params.seed)
            profile(name, made(make, args.trained), loader, args.steps, batch_size)
            if args.ops:
                top_ops(made(make, args.trained), loader, min(args.steps, 5))


if __name__ == "__main__":
    main()
