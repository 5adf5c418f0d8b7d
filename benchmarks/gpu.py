"""One command to measure a GPU at paper scale: every training stage's step and `remove`.

With CUDA: builds the networks of params-coco.yaml (256 px, width-64 inpainters with
8 blocks, R50-FPN 256, random weights — speed does not depend on them) and times each
training stage's own step function (`maskopt.training.tasks`) on synthetic batches,
for fp32 and bf16 autocast, channels_last off/on and torch.compile off/on (the
generators and discriminators; the segmenter's detection code does not compile),
printing step time, images/s and peak memory; then the largest batch that fits for
each stage (bf16), and `maskopt remove` latency at 256, 512 and 1024 px; then the
sample profile end to end: `dvc repro` of params.yaml in a fresh clone of this
repository (HEAD), on the GPU, with each stage's training seconds. Without CUDA it says
so and exits 0. Budget: a few minutes on one GPU.

    .venv/bin/python benchmarks/gpu.py [--steps 5] [--quick] [--sample-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from paper_scale import CLASSES, offline_segmenter_config, paper_networks, paper_params

SIZE = 256  # params-coco.yaml


def synthetic_batch(batch: int, device) -> dict:
    """A batch shaped like PairDataset's, with one person instance per image."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, 1, SIZE, SIZE)
    mask[..., 64:192, 96:160] = 1
    box = torch.tensor([[96.0, 64.0, 160.0, 192.0]])
    instance = {"boxes": box, "labels": torch.tensor([1]), "masks": mask[0].to(torch.uint8)}
    item = {"image": torch.rand(batch, 3, SIZE, SIZE, generator=g),
            "target": torch.rand(batch, 3, SIZE, SIZE, generator=g), "mask": mask,
            "phi": torch.rand(batch, 1, SIZE, SIZE, generator=g) * 2 - 1,
            "gray": torch.rand(batch, 1, SIZE, SIZE, generator=g),
            "target_gray": torch.rand(batch, 1, SIZE, SIZE, generator=g),
            "edges": (torch.rand(batch, 1, SIZE, SIZE, generator=g) > 0.9).float(),
            "target_edges": (torch.rand(batch, 1, SIZE, SIZE, generator=g) > 0.9).float(),
            "semantic": torch.randint(1, CLASSES, (batch, SIZE, SIZE), generator=g),
            "target_semantic": torch.randint(1, CLASSES, (batch, SIZE, SIZE), generator=g),
            "instances": [dict(instance) for _ in range(batch)]}
    from maskopt.core.device import to_device

    return to_device(item, device)


def make_task(stage: str, params, ctx):
    from maskopt.models.build import (
        INPAINTERS,
        build,
        build_discriminator,
        inpainter_config,
    )
    from maskopt.training.tasks import InpainterTask, JointTask, SegmentationTask

    seg_config = offline_segmenter_config(params)
    if stage == "segmenter":
        return SegmentationTask(build(seg_config), params, ctx)
    if stage in INPAINTERS:
        return InpainterTask(stage, build(inpainter_config(params, stage, CLASSES)), params, ctx,
                             CLASSES)
    generators = {k: build(inpainter_config(params, k, CLASSES)) for k in INPAINTERS}
    discriminators = {k: build_discriminator(k, CLASSES, params.inpainter.width)
                      for k in INPAINTERS}
    return JointTask(build(seg_config), generators, discriminators, params, ctx, CLASSES)


def gan_modules(task) -> list[torch.nn.Module]:
    """The generators and discriminators of a task (what channels_last/compile touch)."""
    found = [getattr(task, name) for name in ("generator", "discriminator") if hasattr(task, name)]
    return found + list(getattr(task, "g", {}).values()) + list(getattr(task, "d", {}).values())


def prepare(task, channels_last: bool, compiled: bool) -> None:
    for module in gan_modules(task):
        if channels_last:
            module.to(memory_format=torch.channels_last)
        if compiled:
            module.forward = torch.compile(module.forward)


def time_stage(stage: str, batch: int, amp: bool, channels_last: bool, compiled: bool,
               steps: int, device) -> tuple[float, float]:
    """(seconds per step, peak GiB) of ``steps`` steps after two warm-up steps."""
    from maskopt.training.distributed import Context

    ctx = Context(0, 1, 0, device)
    torch.cuda.reset_peak_memory_stats(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = make_task(stage, paper_params(batch=batch, amp=amp), ctx)
        prepare(task, channels_last, compiled)
        data = synthetic_batch(batch, device)
        for _ in range(2):
            task.step(data)
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            task.step(data)
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    del task
    torch.cuda.empty_cache()
    return seconds, peak


def largest_batch(stage: str, device, start: int = 4, limit: int = 256) -> int:
    """Double the batch (bf16) until a step runs out of memory; the last that ran."""
    fits, batch = 0, start
    while batch <= limit:
        try:
            time_stage(stage, batch, True, True, False, 1, device)
            fits, batch = batch, batch * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return fits


def remove_latency(device, sizes=(256, 512, 1024), repeat: int = 3) -> dict[int, tuple]:
    """Seconds of `remove`'s segmentation and inpainting for one photo of each size (the
    same parts `benchmarks/remove.py` times on CPU)."""
    from maskopt.removal.remover import Letterbox, Remover, _tensor

    # untrained paper-scale networks, no model file; fp32, as before
    remover = Remover(device=device, precision="fp32", networks=paper_networks(device=device))
    out = {}
    for size in sizes:
        photo = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), bool)
        mask[size // 4: 3 * size // 4, size // 3: 2 * size // 3] = True
        lb = Letterbox.fit(size, size, SIZE)
        net_input = _tensor(lb.image(photo), device)

        def segment(net_input=net_input):
            with torch.no_grad():
                return remover.nets.segmenter.predict(net_input).semantic_logits

        semantic = segment()

        def fill(photo=photo, mask=mask, semantic=semantic, lb=lb):
            remover._inpaint(photo, mask, semantic, lb)

        out[size] = tuple(_cuda_seconds(fn, repeat, device) for fn in (segment, fill))
    return out


def _cuda_seconds(fn, repeat: int, device) -> float:
    fn()
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeat


def time_sample_pipeline(repo: Path) -> tuple[float, dict[str, float]]:
    """(wall seconds of `dvc repro`, {stage: training seconds}) of the sample profile in
    a fresh clone of ``repo``'s HEAD: what a user with this GPU waits for on a first run."""
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "maskopt"
        subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{clone / 'mlflow.db'}"
        started = time.perf_counter()
        subprocess.run(["dvc", "repro", "--quiet"], cwd=clone, env=env, check=True)
        wall = time.perf_counter() - started
        stages = {f.stem: json.loads(f.read_text())["seconds"]
                  for f in sorted((clone / "reports" / "train").glob("*.json"))}
    return wall, stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fp32/bf16 only, no compile")
    parser.add_argument("--sample-only", action="store_true",
                        help="only the sample profile's `dvc repro`")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing to measure.")
        return 0
    device = torch.device("cuda", 0)
    if not args.sample_only:
        paper_scale_figures(device, args.steps, args.quick)
    wall, stages = time_sample_pipeline(Path(__file__).resolve().parents[1])
    print(f"\nsample profile (params.yaml), `dvc repro` from a fresh clone: {wall:.0f} s")
    for stage, seconds in stages.items():
        print(f"  {stage}: {seconds:.1f} s training")
    return 0


def paper_scale_figures(device, steps: int, quick: bool) -> None:
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"paper scale ({SIZE} px, width 64, R50-FPN), {steps} timed steps")
    batches = {"segmenter": 4, "edge": 8, "segmentation": 8, "image": 8, "joint": 4}
    variants = list(itertools.product((False, True), (False, True), (False, True)))
    if quick:
        variants = [(amp, False, False) for amp in (False, True)]
    print("| stage | batch | precision | channels_last | compile | s/step | images/s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for stage, batch in batches.items():
        for amp, channels_last, compiled in variants:
            try:
                seconds, peak = time_stage(stage, batch, amp, channels_last, compiled,
                                           steps, device)
                cells = f"{seconds:.3f} | {batch / seconds:.1f} | {peak:.1f}"
            except Exception as exc:  # noqa: BLE001 - report and go on with the next one
                cells = f"failed: {type(exc).__name__} | – | –"
            print(f"| {stage} | {batch} | {'bf16' if amp else 'fp32'} | {channels_last} | "
                  f"{compiled} | {cells} |", flush=True)
    print("\nlargest batch that fits (bf16, channels_last):")
    for stage in batches:
        print(f"  {stage}: {largest_batch(stage, device)}", flush=True)
    print("\nremove, one photo (s): segmentation + inpainting")
    for size, (segment, fill) in remove_latency(device).items():
        print(f"  {size} px: {segment:.3f} + {fill:.3f} = {segment + fill:.3f}")


if __name__ == "__main__":
    sys.exit(main())
