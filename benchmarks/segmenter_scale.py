"""The paper's segmenter on CPU at paper scale, with detectron2's input resize and without.

params-coco.yaml feeds detectron2's PanopticFPN its 256 px pairs at the scale its COCO
weights were trained at (short side 640-800 in training, 800 at test). This times one
pretraining step (L_PS), one joint step (segmenter and the three width-64 inpainters)
and one inference pass of the segmenter, each in its own process so that its peak
memory (max RSS) is its own, for the profile as it is and with the resize switched off
(input_sizes_*: null, anchors scaled to 256 px). Untrained weights: speed does not
depend on them. Batch 1 on CPU; the paper's batch is 4 per GPU.

    .venv/bin/python benchmarks/segmenter_scale.py [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import torch
from gpu import make_task, synthetic_batch
from paper_scale import offline_segmenter_config, paper_params

VARIANTS = {"resize (params-coco.yaml)": {},
            "no resize (256 px, anchors 8-128)": {"input_sizes_train": None,
                                                  "input_size_test": None}}
WORK = ("pretrain step", "joint step", "inference")


def params_of(variant: str):
    params = paper_params(batch=1, amp=False)
    return params.model_copy(update={"segmenter": params.segmenter.model_copy(
        update=VARIANTS[variant])})


def run_one(variant: str, work: str, steps: int) -> dict:
    from maskopt.models.build import build
    from maskopt.training.distributed import Context

    torch.manual_seed(0)
    params = params_of(variant)
    data = synthetic_batch(1, torch.device("cpu"))
    if work == "inference":
        net = build(offline_segmenter_config(params)).eval()

        def once():
            with torch.no_grad():
                net.predict(data["image"])
    else:
        task = make_task("segmenter" if work == "pretrain step" else "joint", params,
                         Context(0, 1, 0, torch.device("cpu")))

        def once():
            task.step(data)
    once()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        once()
    return {"seconds": (time.perf_counter() - started) / steps,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            print(json.dumps(run_one(*args.one, args.steps)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, fp32")
    print(f"{'':36}" + "".join(f"{w:>24}" for w in WORK))
    results = {}
    for variant in VARIANTS:
        row = []
        for work in WORK:
            done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps),
                                   "--one", variant, work], capture_output=True, text=True,
                                  check=True)
            results[variant, work] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[variant, work]
            row.append(f"{r['seconds']:8.2f} s {r['peak_gib']:6.2f} GiB")
        print(f"{variant:36}" + "".join(f"{cell:>24}" for cell in row), flush=True)
    first, second = VARIANTS
    print("resize / no resize (time): " + ", ".join(
        f"{w} {results[first, w]['seconds'] / results[second, w]['seconds']:.1f}x"
        for w in WORK))


if __name__ == "__main__":
    main()
