"""The `fixed_dilation` stage: the learned mask against the pretrained mask grown by the
best fixed d (:mod:`maskopt.evaluation.dilation`) -> reports/fixed_dilation.{json,md},
its two headline numbers (reports/fixed_dilation_metrics.json) and its plot, also
logged to MLflow.

A stage apart from `evaluate`, which reads the same models: the two share no result,
so they run side by side, each on one core.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tqdm import tqdm

from maskopt.core.device import pick_device, pin_threads
from maskopt.core.io import atomic_path, write_json
from maskopt.data.pairs import PairDataset
from maskopt.evaluation.dilation import (
    LEARNED,
    OWN_INPAINTERS,
    best_dilations,
    dilation_report,
    every_inpainter,
    sweep,
)
from maskopt.evaluation.dilation_report import dilation_markdown, dilation_plot, inpainter_name
from maskopt.models.build import INPAINTERS
from maskopt.models.inference import Networks, hold_for_inference
from maskopt.pipeline.layout import (
    JOINT_FILE,
    PAIRS,
    REPORTS,
    SEGMENTER_FILE,
    STAGE_PARAMS,
    inpainter_file,
)
from maskopt.pipeline.params import Params
from maskopt.pipeline.tracking import flatten, open_stage_run, pick_params

REPORT = REPORTS / "fixed_dilation.json"
MARKDOWN = REPORTS / "fixed_dilation.md"
METRICS = REPORTS / "fixed_dilation_metrics.json"
PLOT = REPORTS / "fixed_dilation.png"
POINTS = REPORTS / "fixed_dilation_points.json"  # what `dvc plots` draws


def fixed_dilation(params: Params) -> dict:
    device = pick_device(params.train.device)
    pin_threads(params.train.threads)
    joint = Networks.load(JOINT_FILE, device)
    pretrained = Networks.load_pretrained(
        SEGMENTER_FILE, {kind: inpainter_file(kind) for kind in INPAINTERS},
        joint.canny_sigma, device)
    hold_for_inference(joint, pretrained)  # scored as a removal computes them
    test = PairDataset(PAIRS / "test", joint.canny_sigma)
    e = params.evaluate
    reads = pick_params(params.model_dump(), tuple(STAGE_PARAMS["fixed_dilation"]))
    with open_stage_run("fixed_dilation", reads, pick_params(params.model_dump())) as run:
        report = fixed_dilation_report(pretrained, joint, test, e.fixed_dilations,
                                       e.external_inpainters)
        for why in report["failures"].values():
            tqdm.write(f"fixed_dilation: left out: {why}")
        versus = report["learned_vs_best"]["pretrained"]["all"]
        headline = {"fixed_dilation": {"best_px": report["best"]["pretrained"],
                                       "learned_minus_best": round(versus["mean_difference"], 4)}}
        write_json(METRICS, headline)
        write_json(REPORT, report)
        write_json(POINTS, fixed_dilation_points(report))
        with atomic_path(MARKDOWN) as tmp:
            tmp.write_text(dilation_markdown(report, PLOT.name))
        dilation_plot(report, PLOT)
        numbers = {k: float(v) for k, v in flatten(headline).items()}
        run.log_metrics(numbers)
        run.log_parent_metrics(numbers)
        for path in (METRICS, REPORT, MARKDOWN, PLOT, POINTS):
            run.log_artifact(path)
    return headline


def fixed_dilation_report(pretrained: Networks, joint: Networks, test, dilations: list[int],
                          external: dict[str, str]) -> dict:
    """The learned mask against the pretrained mask + the best fixed d, chosen on the
    validation pairs (maskopt.evaluation.dilation); the test pairs are filled at d*."""
    validation = PairDataset(PAIRS / "validation", joint.canny_sigma)
    with tempfile.TemporaryDirectory() as workdir, tqdm(
            total=len(validation), desc="fixed dilations (validation)", unit="pair") as bar:
        chosen_on, failures = sweep(pretrained, joint, validation,
                                    every_inpainter(dilations, list(external)), external,
                                    Path(workdir), bar)
    best = best_dilations(chosen_on, dilations)
    with tempfile.TemporaryDirectory() as workdir, tqdm(
            total=len(test), desc="fixed dilations (test, at d*)", unit="pair") as bar:
        scored, failed = sweep(pretrained, joint, test, {k: [d] for k, d in best.items()},
                               external, Path(workdir), bar)
    return dilation_report(chosen_on, scored, dilations, sorted(set(test.pairs.buckets)),
                           {**failures, **failed})


def fixed_dilation_points(report: dict) -> list[dict]:
    """`dvc plots` rows: validation PSNR against d per own inpainter (on the pretrained
    mask grown by d), and the same inpainter on the learned mask as a flat line."""
    curves = report["psnr"]["validation"]
    own = [k for k in curves if k in OWN_INPAINTERS]
    return [{"d": d, **{f"{inpainter_name(k)}, pretrained mask + d": round(curves[k][str(d)], 4)
                        for k in own},
             **{f"{inpainter_name(k)}, learned mask": round(curves[k][LEARNED], 4)
                for k in own}}
            for d in report["dilations"]]
