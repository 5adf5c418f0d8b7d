"""The one training loop every stage uses: resume, progress, logging, checkpoints, NaN guard.

A *task* (maskopt.training.tasks) owns the networks and optimizers and does one
optimisation step per batch; this loop does everything around it. Data parallelism
is torchrun's: a distributed sampler gives each rank its shard, and tasks average
gradients over ranks before each optimizer step (see ``sync_gradients``).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from maskopt.core.device import to_device
from maskopt.core.errors import MaskoptError
from maskopt.data.pairs import collate
from maskopt.training.checkpoint import load_checkpoint, restore_training, save_checkpoint
from maskopt.training.distributed import Context, any_rank, barrier, mean_over_ranks


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (also for one process) that can start mid-epoch.

    It yields (index, epoch) keys, so the dataset draws each epoch's random flip
    afresh and reproducibly (a resumed run flips exactly as an uninterrupted one)."""

    def __init__(self, dataset: Dataset, ctx: Context, seed: int):
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                         seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self):
        indices = list(super().__iter__())[self.skip:]
        self.skip = 0
        return iter([(index, self.epoch) for index in indices])


def _yield_to_training(worker_id: int) -> None:
    """Lower a CPU run's loader workers' priority: the step's threads fill every core, and
    a worker that preempts one stalls them all at the next barrier."""
    os.nice(10)


def make_loader(dataset: Dataset, ctx: Context, batch_size: int, workers: int,
                seed: int) -> DataLoader:
    if len(dataset) < batch_size * ctx.world_size:
        raise MaskoptError(f"{len(dataset)} training pairs are fewer than one batch "
                           f"({batch_size} × {ctx.world_size} processes)")
    sampler = ResumableSampler(dataset, ctx, seed)
    # Each new iterator draws its workers' seed from this generator: from the global one
    # it would take a draw per epoch with 0 workers and one in all with persistent
    # workers, and the model's own draws (sampled RoIs) would depend on the worker count.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      generator=generator,
                      collate_fn=collate, drop_last=True, persistent_workers=workers > 0,
                      worker_init_fn=_yield_to_training if ctx.device.type == "cpu" else None,
                      pin_memory=ctx.device.type == "cuda")


def sync_gradients(parameters, ctx: Context) -> None:
    """Average gradients over ranks (what DDP does), in one flat all-reduce.

    Done explicitly because the GAN steps call the discriminator several times per
    step (real, detached fake, fake for G), a pattern DDP's reducer does not allow.
    """
    if not ctx.distributed:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_weights(modules: dict, ctx: Context) -> None:
    """Start every rank from rank 0's weights."""
    if ctx.distributed:
        for module in modules.values():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)


def train(task, loader: DataLoader, *, steps: int, ctx: Context, checkpoint: Path,
          fingerprint: str, checkpoint_every: int, log_every: int, run, desc: str) -> dict:
    """Run ``task.step`` for ``steps`` steps; return first/last mean losses, timing and
    the curve (the mean losses of every ``log_every`` window, against step)."""
    start_step = 0
    state = load_checkpoint(checkpoint, fingerprint)
    if state is not None:
        start_step = restore_training(state, task.modules, task.optimizers, str(checkpoint))
        history = state["extra"].get("history", {})
        if ctx.is_main:
            tqdm.write(f"{desc}: resuming from step {start_step} ({checkpoint})")
    else:
        broadcast_weights(task.modules, ctx)
        history = {}
    sampler: ResumableSampler = loader.sampler
    per_epoch = len(loader)
    epoch, sampler.skip = divmod(start_step, per_epoch)
    sampler.skip *= loader.batch_size
    window: dict[str, list[float]] = defaultdict(list)
    running: dict[str, float] = {}
    bar = tqdm(total=steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True,
               disable=not ctx.is_main)
    step, last_saved, started = start_step, start_step, time.perf_counter()
    while step < steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            if step >= steps:
                break
            values = task.step(to_device(batch, ctx.device))
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if any_rank(bool(bad), ctx):
                bar.close()
                kept = f"last good checkpoint {checkpoint} (step {last_saved}) kept" \
                    if checkpoint.exists() else "no checkpoint written yet"
                raise MaskoptError(f"{desc}: non-finite loss {', '.join(bad) or '(other rank)'} "
                                   f"at step {step + 1}; stopping, {kept}")
            step += 1
            for key, value in values.items():
                window[key].append(value)
                running[key] = value if key not in running else 0.9 * running[key] + 0.1 * value
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(running.items())[:3]}, refresh=False)
            if step % log_every == 0 or step == steps:
                means = mean_over_ranks({k: sum(v) / len(v) for k, v in window.items()}, ctx)
                window.clear()
                history.setdefault("first", means)
                history["last"] = means
                history.setdefault("curve", []).append(
                    {"step": step, **{k: round(v, 6) for k, v in means.items()}})
                run.log_metrics(means, step=step)
            if step % checkpoint_every == 0 or step == steps:
                if ctx.is_main:
                    save_checkpoint(checkpoint, step=step, fingerprint=fingerprint,
                                    modules=task.modules, optimizers=task.optimizers,
                                    extra={"history": history})
                last_saved = step
                barrier(ctx)
        epoch += 1
    bar.close()
    seconds = time.perf_counter() - started
    summary = {f"{k}_first": v for k, v in history.get("first", {}).items()}
    summary.update({f"{k}_last": v for k, v in history.get("last", {}).items()})
    summary.update(steps=steps, resumed_from=start_step, seconds=round(seconds, 1),
                   seconds_per_step=round(seconds / max(1, steps - start_step), 3),
                   curve=history.get("curve", []))
    return summary
