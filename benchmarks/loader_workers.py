"""CPU time of a training stage's steps with 0 or 1 data-loader worker processes.

A stage's loader (`maskopt.training.loop.make_loader`) with ``train.workers: 1`` hands
each batch from a worker process to the training process through shared memory; with
0 the training process collates the (cached) pairs itself. This trains one stage's
task from fresh weights for ``--steps`` steps with each worker count in turn
(alternating, ``--repeat`` times each) and prints the wall time and the CPU seconds of
the training process plus its worker: on a machine whose cores all train (`make
pipeline` runs two stages side by side on two cores) the CPU seconds are what counts.
Both counts give the same batches, so the same model (checked: the finetune stage's
model file has the same MD5 with either). Needs `data/pairs` (`dvc repro synthesize`);
run it on an idle machine.

    .venv/bin/python benchmarks/loader_workers.py [--stage pretrain_inpainter@image] \
        [--steps 100] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import warnings

import torch
from profile_stages import make_tasks

from maskopt.data.pairs import PairDataset
from maskopt.pipeline.params import load_params
from maskopt.training.distributed import Context
from maskopt.training.loop import make_loader


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(params, ctx, stage: str, workers: int, steps: int) -> tuple[float, float]:
    """(wall s, CPU s of this process and its loader worker) for ``steps`` steps,
    from opening the dataset (a stage decodes its pairs once) to the worker's exit."""
    torch.manual_seed(params.seed)
    wall, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
    dataset = PairDataset("data/pairs/train", params.inpainter.canny_sigma, flip=True,
                          seed=params.seed, cache=params.train.cache_pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = make_tasks(params, dataset, ctx)[stage]()
    batch_size = params.train.inpainter.batch_size
    loader = make_loader(dataset, ctx, batch_size, workers, params.seed)
    batches = iter(loader)
    for _ in range(steps):  # 360 pairs / 8 = 45 batches an epoch: restart on the way
        try:
            batch = next(batches)
        except StopIteration:
            loader.sampler.set_epoch(loader.sampler.epoch + 1)
            batches = iter(loader)
            batch = next(batches)
        task.step(batch)
    del batches, loader  # the worker exits and is waited for: its CPU time is counted
    gc.collect()
    return (time.perf_counter() - wall,
            time.process_time() - cpu + children_cpu() - child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="pretrain_inpainter@image",
                        help="pretrain_inpainter@edge|segmentation|image")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    params = load_params("params.yaml")
    torch.set_num_threads(params.train.threads or torch.get_num_threads())
    ctx = Context(0, 1, 0, torch.device("cpu"))
    print(f"{args.stage}, {args.steps} steps, {torch.get_num_threads()} threads")
    print("| loader workers | wall s | CPU s | CPU s / step |\n|---|---|---|---|")
    cpu = {0: [], 1: []}
    for _ in range(args.repeat):
        for workers in (1, 0):
            wall, seconds = run(params, ctx, args.stage, workers, args.steps)
            cpu[workers].append(seconds)
            print(f"| {workers} | {wall:.1f} | {seconds:.1f} | {seconds / args.steps:.3f} |",
                  flush=True)
    print(f"CPU time, 1 worker / 0 workers: {sum(cpu[1]) / sum(cpu[0]):.3f}")


if __name__ == "__main__":
    main()
