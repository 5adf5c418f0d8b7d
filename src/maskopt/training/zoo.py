"""``make zoo``: train the sample's pretrained segmenter and export it to the package.

Runs zoo/recipe.yaml: params.yaml's sample profile with a seed no sample run uses and
more scenes and steps. It draws the scenes, synthesizes the pairs and trains the
segmenter in zoo/work/ (resumable: a stopped run goes on from its last checkpoint),
measuring the selected mask's coverage and precision on the zoo's held-out pairs
every ``curve_every`` steps. The weights go to src/maskopt/zoo/ in half precision,
with record.json: sha256, commit, recipe, time, machine and curve.

    python -m maskopt.pipeline.launch -m maskopt.training.zoo   (make zoo)
"""

from __future__ import annotations

import argparse
import copy
import platform
import subprocess
import time
import warnings
from pathlib import Path

import torch
import yaml

from maskopt.core.device import pin_threads
from maskopt.core.errors import MaskoptError
from maskopt.core.io import write_json
from maskopt.data.pairs import PairDataset
from maskopt.data.prepare import prepare_raw_data, synthesize_pairs
from maskopt.evaluation.masks import mask_quality
from maskopt.models.build import build, save_model, segmenter_config
from maskopt.models.selection import box_margin
from maskopt.models.zoo_weights import SAMPLE_SEGMENTER, load_zoo_segmenter, sha256_of
from maskopt.pipeline.params import Params, load_params
from maskopt.pipeline.tracking import StageRun
from maskopt.training.distributed import Context
from maskopt.training.loop import make_loader, train
from maskopt.training.tasks import SegmentationTask

RECIPE = Path("zoo/recipe.yaml")
WORK = Path("zoo/work")
OUT = Path("src/maskopt/zoo")


def zoo_params(params: Params, overrides: dict) -> Params:
    """``params`` with the recipe's values merged in, section by section."""
    def merge(base: dict, changes: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and k in base else v
                           for k, v in changes.items()}}

    return Params.model_validate(merge(params.model_dump(), overrides))


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def make_data(params: Params, work: Path) -> tuple[PairDataset, PairDataset]:
    """The zoo's scenes and pairs; the held-out pairs come from its own test scenes."""
    prepare_raw_data(params, work / "raw", work / "downloads")
    synthesize_pairs(params, work / "raw", work / "pairs")
    sigma = params.inpainter.canny_sigma
    return (PairDataset(work / "pairs" / "train", sigma, flip=True, seed=params.seed,
                        cache=True), PairDataset(work / "pairs" / "test", sigma))


def train_with_curve(params: Params, training: PairDataset, held_out: PairDataset,
                     every: int, work: Path):
    """Train the segmenter, measuring the held-out mask every ``every`` steps.
    Returns the task, its config and the curve."""
    ctx = Context(0, 1, 0, torch.device("cpu"))
    tax = training.taxonomy
    config = segmenter_config(params, tax.num_things, tax.num_classes, tax.thing_category_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = SegmentationTask(build(config), params, ctx)
    schedule = params.train.segmentation
    loader = make_loader(training, ctx, schedule.batch_size, 0, params.seed)
    margin = box_margin(params.alpha, params.synthesize.image_size)
    curve, points = [], [*range(every, schedule.steps, every), schedule.steps]
    for step in points:  # each call resumes from the checkpoint the last one wrote
        summary = train(task, loader, steps=step, ctx=ctx, checkpoint=work / "checkpoint.pt",
                        fingerprint=repr(params.model_dump()), checkpoint_every=every,
                        log_every=params.train.log_every, run=StageRun(), desc="zoo segmenter")
        quality = mask_quality(task.segmenter, held_out, margin)
        task.segmenter.train()
        losses = {k.removesuffix("_last"): round(v, 4) for k, v in summary.items()
                  if k.endswith("_last")}
        curve.append({"step": step, **{k: round(v, 4) for k, v in quality.items()}, **losses})
        print(f"zoo: step {step}: held-out coverage {quality['coverage']:.3f}, "
              f"precision {quality['precision']:.3f}", flush=True)
    return task, config, curve


def export(task, config: dict, params: Params, out: Path, taxonomy: list) -> Path:
    """Write the weights in half precision (the package's size limit)."""
    half = copy.deepcopy(task.segmenter).half()
    save_model(out / SAMPLE_SEGMENTER, {"segmenter": (config, half)}, taxonomy=taxonomy,
               trained_on={"data_source": "sample (zoo scenes)", "seed": params.seed,
                           "image_size": params.synthesize.image_size,
                           "steps": {"segmentation": params.train.segmentation.steps}})
    return out / SAMPLE_SEGMENTER


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train the sample's zoo segmenter")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--work", type=Path, default=WORK, help="scenes, pairs, checkpoint")
    parser.add_argument("--out", type=Path, default=OUT, help="where the weights go")
    args = parser.parse_args(argv)
    build_zoo(args.recipe, args.work, args.out)


def build_zoo(recipe_path: Path, work: Path, out: Path) -> dict:
    """Make the zoo segmenter in ``out``; return its record."""
    started, commit = time.perf_counter(), _commit()  # the code that trains, not a later one
    recipe = yaml.safe_load(recipe_path.read_text())
    params = zoo_params(load_params("params.yaml"), recipe["params"])
    if params.data.source != "sample" or params.segmenter.weights != "sample-zoo":
        raise MaskoptError("make zoo builds the sample profile's starting point: params.yaml "
                           "must have data.source: sample and segmenter.weights: sample-zoo")
    # the zoo itself starts from scratch
    params = zoo_params(params, {"segmenter": {"weights": "none"}})
    pin_threads(params.train.threads)
    torch.manual_seed(params.seed)
    training, held_out = make_data(params, work)
    data_seconds = time.perf_counter() - started
    task, config, curve = train_with_curve(params, training, held_out,
                                           recipe["curve_every"], work)
    path = export(task, {**config, "weights": "none"}, params, out,
                  list(training.taxonomy.categories))
    # what a user starts from: the fp16 weights, back in an fp32 network
    reloaded = build({**config, "weights": "none"})
    load_zoo_segmenter(reloaded, config, path)
    exported = mask_quality(reloaded, held_out, box_margin(params.alpha,
                                                            params.synthesize.image_size))
    record = {
        "file": SAMPLE_SEGMENTER, "sha256": sha256_of(path.read_bytes()),
        "bytes": path.stat().st_size, "precision": "fp16 (trained in fp32)",
        "commit": commit, "command": "make zoo", "recipe": recipe,
        "train_pairs": len(training), "held_out_pairs": len(held_out),
        "machine": {"cpu": _cpu(), "threads": torch.get_num_threads(),
                    "kernels": params.train.cpu_kernels},
        "seconds": {"data": round(data_seconds), "total": round(time.perf_counter() - started)},
        "held_out_fp16": {k: round(v, 4) for k, v in exported.items()}, "curve": curve}
    write_json(out / "record.json", record)
    print(f"zoo: wrote {path} ({path.stat().st_size / 1e6:.1f} MB): held-out coverage "
          f"{exported['coverage']:.3f}, precision {exported['precision']:.3f}")
    return record


if __name__ == "__main__":
    try:
        main()
    except MaskoptError as exc:
        raise SystemExit(f"error: {exc}") from None
