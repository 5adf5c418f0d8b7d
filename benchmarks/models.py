"""Every network of a params profile on this CPU, against the compute floor.

The floor: a 3×3 convolution of the residual blocks' size (256 channels at 64×64), in
fp32, under bf16 autocast, and under bf16 autocast with channels-last tensors (how
`maskopt remove` runs), gives this machine's conv throughput (GFLOP/s) in each. A
shared 2-core VM changes speed by 2-3× within minutes, so the floor is re-measured
right before and after each timed forward, on as many FLOPs as it does, and each
forward's ratio is taken to the mean of those two. For each network the script
counts FLOPs per image with torch's ``FlopCounterMode`` and prints

- inference: eval mode, no grad, one image, as `remove` holds the networks
  (``maskopt.models.fast_inference.optimize_for_inference``; the segmenter's ``predict`` with
  the mask head on every detection: the most a photo costs),
  fp32, bf16 and bf16 channels-last where the CPU has fast bf16: the median time of
  ``--rounds`` forwards, and the median of their ratios time ÷ (FLOPs ÷ throughput);
  for the generators also their convolutions alone (each layer run by itself on the
  input it gets in the forward, same FLOPs and floor): how far the layers' own shapes
  are from the floor, apart from the norms, pads and other passes between them;
- training: one step of the stage's own task (``InpainterTask.step``,
  ``SegmentationTask.step``, ``JointTask.step``: G + D + losses, with the profile's
  λ and a random VGG19) on a synthetic batch, under the profile's ``train.amp``;
- the peak resident memory of each measurement (each runs in a fresh process).

Run on an idle machine: with 2 cores any other job makes the figures swing.

    .venv/bin/python benchmarks/models.py [--params params-coco.yaml] [--batch 4]
        [--only edge,segmentation,image,segmenter,joint] [--repeat 2] [--rounds 5]
        [--inference-only]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
import warnings

import torch
from paper_scale import CLASSES, offline_segmenter_config, paper_params

KINDS = ("edge", "segmentation", "image", "segmenter", "joint")


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


# (name, bf16 autocast, channels-last weights and input); the last is how `remove` runs
PRECISIONS = (("fp32", False, False), ("bf16", True, False), ("bf16 NHWC", True, True))


def floor_convolution(bf16: bool, nhwc: bool):
    """A 256→256 3×3 convolution at 64×64 (the residual blocks' size) in the given
    precision and layout, and its FLOPs."""
    from maskopt.core.device import autocast

    layout = torch.channels_last if nhwc else torch.contiguous_format
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval().to(memory_format=layout)
    x = torch.rand(1, 256, 64, 64).contiguous(memory_format=layout)

    def run():
        with torch.no_grad(), autocast(torch.device("cpu"), bf16):
            conv(x)

    return run, 2 * 256 * 256 * 9 * 64 * 64


def paired_with_floor(forward, gflop: float, bf16: bool, nhwc: bool,
                      rounds: int) -> tuple[float, float, float]:
    """(median seconds, median ratio to the floor, median floor GFLOP/s) of ``rounds``
    forwards, each with the floor measured right before and after it on as many
    FLOPs as the forward does (so both see the machine at the same speed)."""
    conv, flops = floor_convolution(bf16, nhwc)
    convs = max(1, round(gflop * 1e9 / flops))

    def floor_seconds() -> float:
        start = time.perf_counter()
        for _ in range(convs):
            conv()
        return time.perf_counter() - start

    forward(), conv()  # warm-up: oneDNN picks its kernels on the first call
    seconds, ratios, floors = [], [], []
    for _ in range(rounds):
        before = floor_seconds()
        start = time.perf_counter()
        forward()
        seconds.append(time.perf_counter() - start)
        floor = (before + floor_seconds()) / 2 * gflop * 1e9 / (convs * flops)
        floors.append(gflop / floor)
        ratios.append(seconds[-1] / floor)
    return tuple(float(torch.tensor(v).median()) for v in (seconds, ratios, floors))


def convolutions_alone(net: torch.nn.Module, forward, bf16: bool):
    """A function that runs every convolution of ``net`` by itself, on the input it gets
    in ``forward`` (captured once), in the given precision: the forward minus every pass
    between the convolutions."""
    from maskopt.core.device import autocast

    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d,
                                                        torch.nn.ConvTranspose2d))]
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda m, args: inputs.append((m, args[0])))
             for m in convs]
    with torch.no_grad(), autocast(torch.device("cpu"), bf16):
        forward()
    for hook in hooks:
        hook.remove()

    def run():
        with torch.no_grad(), autocast(torch.device("cpu"), bf16):
            for conv, x in inputs:
                conv(x)

    return run


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def synthetic_batch(size: int, batch: int, classes: int) -> dict:
    """A batch with every key the training tasks read, one person-like box each."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 3: 2 * size // 3] = 1
    semantic = torch.randint(1, classes, (batch, size, size), generator=g)
    inst_mask = mask[0, 0].to(torch.uint8)[None]
    box = torch.tensor([[size / 3, size / 4, 2 * size / 3, 3 * size / 4]])
    rand = lambda c: torch.rand(batch, c, size, size, generator=g)  # noqa: E731
    return {"image": rand(3), "target": rand(3), "mask": mask, "phi": rand(1) * 2 - 1,
            "gray": rand(1), "target_gray": rand(1), "edges": (rand(1) > 0.9).float(),
            "target_edges": (rand(1) > 0.9).float(), "semantic": semantic,
            "target_semantic": semantic.clone(),
            "instances": [{"boxes": box, "labels": torch.tensor([1]), "masks": inst_mask}
                          for _ in range(batch)]}


def _measure(kind: str, args, precisions: tuple, queue) -> None:
    """In a fresh process: FLOPs, inference and training-step time, peak memory."""
    warnings.simplefilter("ignore")

    from maskopt.core.device import autocast
    from maskopt.models.build import build, build_discriminator, inpainter_config
    from maskopt.models.fast_inference import keep_channels_last, optimize_for_inference
    from maskopt.training.distributed import Context
    from maskopt.training.tasks import InpainterTask, JointTask, SegmentationTask

    torch.manual_seed(0)
    params = paper_params(args.params)  # offline: nothing downloaded
    size = params.synthesize.image_size
    ctx = Context(0, 1, 0, torch.device("cpu"))
    batch = synthetic_batch(size, args.batch, CLASSES)
    one = {k: v[:1] if torch.is_tensor(v) else v[:1] for k, v in batch.items()}

    def generator(k):
        return build(inpainter_config(params, k, CLASSES)).eval()

    def inference_generator(k):  # as `Remover` holds it
        net = generator(k)
        optimize_for_inference([net], channels_last=False)
        return net

    if kind == "segmenter":
        net = build(offline_segmenter_config(params)).eval()
        optimize_for_inference([net], channels_last=False)  # as `Remover` holds it
        # every detection masked: the most a photo costs (`remove` masks only those
        # scoring >= its min score; how many do depends on the photo and the training)
        forward = lambda: net.predict(one["image"])  # noqa: E731
        task = SegmentationTask(build(offline_segmenter_config(params)), params, ctx)
    elif kind == "joint":
        seg = build(offline_segmenter_config(params))
        gens = {k: generator(k) for k in ("edge", "segmentation", "image")}
        forward = None  # its networks' inference is the rows above
        discriminators = {k: build_discriminator(k, CLASSES, params.inpainter.width)
                          for k in gens}
        task = JointTask(seg, gens, discriminators, params, ctx, CLASSES)
    else:
        net = inference_generator(kind)
        inputs = {"edge": (one["gray"], one["edges"], one["mask"]),
                  "segmentation": (torch.softmax(torch.rand(1, CLASSES, size, size), 1),
                                   one["mask"]),
                  "image": (one["image"], one["edges"], torch.softmax(
                      torch.rand(1, CLASSES, size, size), 1), one["mask"])}[kind]
        forward = lambda: net(*inputs)  # noqa: E731
        task = InpainterTask(kind, generator(kind).train(), params, ctx, CLASSES)

    result = {"kind": kind}
    if forward is not None:
        # the network's FLOPs (RoIAlign is torchvision's op here, which the counter skips)
        with torch.no_grad():
            result["gflop"] = count_flops(forward) / 1e9
        for precision, bf16, nhwc in precisions:  # NCHW rows first: this one is for good
            if nhwc:
                keep_channels_last(net)

            def infer(bf16=bf16):
                with torch.no_grad(), autocast(ctx.device, bf16):
                    forward()

            result[precision] = paired_with_floor(infer, result["gflop"], bf16, nhwc,
                                                  args.rounds)
            if kind != "segmenter":
                result[precision + " convs"] = paired_with_floor(
                    convolutions_alone(net, forward, bf16), result["gflop"], bf16, nhwc,
                    args.rounds)
    else:
        result["gflop"] = None
    result["train_step"] = None if args.inference_only else timed(lambda: task.step(batch),
                                                                   args.repeat)
    result["amp"] = params.train.amp
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def main() -> None:
    from maskopt.core.device import cpu_has_fast_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params-coco.yaml")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="training steps timed")
    parser.add_argument("--rounds", type=int, default=5, help="inference forwards timed")
    parser.add_argument("--only", default=",".join(KINDS))
    parser.add_argument("--inference-only", action="store_true", help="no training steps")
    args = parser.parse_args()
    precisions = tuple(p for p in PRECISIONS if not p[1] or cpu_has_fast_bf16())
    print(f"{args.params}, batch {args.batch} for training steps, "
          f"{torch.get_num_threads()} threads; inference: median time, median ratio to "
          "the 3×3 conv floor measured around each forward (its median GFLOP/s)")
    context = multiprocessing.get_context("spawn")
    total = 0.0
    for kind in args.only.split(","):
        queue = context.Queue()
        process = context.Process(target=_measure, args=(kind, args, precisions, queue))
        process.start()
        r = queue.get()
        process.join()
        line = f"{kind:>12}"
        if r["gflop"] is not None:
            if kind != "segmenter":
                total += r["gflop"]
            line += f"  {r['gflop']:6.1f} GFLOP/img  inference"
            for precision, _, _ in precisions:
                seconds, ratio, floor = r[precision]
                line += f"  {precision} {seconds:5.2f} s ({ratio:4.2f}x of {floor:4.0f}"
                if precision + " convs" in r:
                    line += f"; convs alone {r[precision + ' convs'][1]:4.2f}x"
                line += ")"
        if r["train_step"] is not None:
            line += (f"  train step (batch {args.batch}, amp={r['amp']}) "
                     f"{r['train_step']:6.2f} s")
        line += f"  peak {r['peak_mib']:5.0f} MiB"
        print(line)
    if total:
        print(f"three generators: {total:.0f} GFLOP per image")


if __name__ == "__main__":
    main()
