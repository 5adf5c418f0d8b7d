"""The `evaluate_baselines` and `evaluate` stages: metrics, tables, plots and grids,
also logged to MLflow.

The rows split in two stages so that the baselines' (most of the rows) are scored
while joint training runs, and `evaluate` then scores the joint models' rows alone:
on two cores the pipeline's last stage no longer runs on one of them while the other
idles (benchmarks/README.md)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from maskopt.core.device import pick_device, pin_threads
from maskopt.core.errors import MaskoptError
from maskopt.core.io import atomic_path, read_json, write_json, write_png
from maskopt.data.pairs import PairDataset
from maskopt.evaluation.engine import Sources
from maskopt.evaluation.evaluate import (
    GRID_FIRST_COLUMN,
    compare_rows,
    draw_rows,
    figure_columns,
    flat_metrics,
    headline_metrics,
    score_rows,
)
from maskopt.evaluation.image_metrics import SharedNetworks
from maskopt.evaluation.report import labelled_grid, plot_rows, tables_markdown
from maskopt.evaluation.rows import Row, evaluation_rows, is_baseline
from maskopt.models.build import INPAINTERS, load_model, restore
from maskopt.models.edgeconnect import load_edgeconnect
from maskopt.models.inference import Networks, hold_for_inference
from maskopt.pipeline.layout import (
    JOINT_FILE,
    JOINT_WITHOUT_MEL_FILE,
    PAIRS,
    REPORTS,
    SEGMENTER_FILE,
    STAGE_PARAMS,
    finetuned_file,
    inpainter_file,
)
from maskopt.pipeline.params import Params
from maskopt.pipeline.tracking import flatten, open_stage_run, pick_params

GRIDS_PER_IMAGE = 4
BASELINES = REPORTS / "baselines.json"  # the evaluate_baselines stage's rows


def evaluate_baselines(params: Params) -> dict:
    """Stage `evaluate_baselines`: the rows no joint model takes part in (Tables I–III,
    the starting point, OpenCV on the pretrained and GT masks) on the test pairs ->
    reports/baselines.json, which the `evaluate` stage merges with the joint rows."""
    device = pick_device(params.train.device)
    pin_threads(params.train.threads)
    sigma = params.inpainter.canny_sigma
    sources = Sources.of(*_baseline_networks(params, device, sigma))
    dataset = PairDataset(PAIRS / "test", sigma)
    rows = [row for row in evaluation_rows(params.evaluate.dilations,
                                           list(params.finetune.pairs), [], sources.names())
            if is_baseline(row)]
    reads = pick_params(params.model_dump(), tuple(STAGE_PARAMS["evaluate_baselines"]))
    with open_stage_run("evaluate_baselines", reads, pick_params(params.model_dump())) as run:
        shared = SharedNetworks(device)
        with tqdm(total=len(dataset), desc="evaluate_baselines", unit="pair") as bar:
            scored = score_rows(rows, sources, dataset, shared, grid_pairs=0, progress=bar)
        write_json(BASELINES, {"names": list(dataset.pairs.names), "table": scored.table,
                               "per_image": scored.per_image,
                               "unavailable": shared.unavailable})
        run.log_artifact(BASELINES)
    return {row: table["all"]["psnr"] for row, table in scored.table.items()}


def evaluate(params: Params) -> dict:
    device = pick_device(params.train.device)
    pin_threads(params.train.threads)
    sources = _trained_networks(params, device)
    nets = sources.segmenters["joint"]
    dataset = PairDataset(PAIRS / "test", nets.canny_sigma)
    e = params.evaluate
    rows = evaluation_rows(e.dilations, list(params.finetune.pairs),
                           list(e.external_inpainters), sources.names())
    baselines = [row for row in rows if is_baseline(row)]
    scored_before = read_baselines(baselines, list(dataset.pairs.names))
    reads = pick_params(params.model_dump(), tuple(STAGE_PARAMS["evaluate"]))
    with open_stage_run("evaluate", reads, pick_params(params.model_dump())) as run:
        shared = SharedNetworks(device)
        for name, reason in shared.unavailable.items():
            tqdm.write(f"evaluate: {name} unavailable: {reason}")
        with tqdm(total=len(dataset), desc="evaluate", unit="pair") as bar, \
                tempfile.TemporaryDirectory() as workdir:
            scored = score_rows([row for row in rows if not is_baseline(row)], sources,
                                dataset, shared, e.grid_pairs, bar, e.external_inpainters,
                                Path(workdir))
        for why in scored.failures.values():
            tqdm.write(f"evaluate: left out: {why}")
        kept = [row.name for row in rows if row.name not in scored.failures]
        table = _in_order({**scored_before["table"], **scored.table}, kept)
        per_image = {metric: _in_order({**scored_before["per_image"].get(metric, {}),
                                        **by_row}, kept)
                     for metric, by_row in scored.per_image.items()}
        drawn = {**draw_rows(baselines, sources, dataset, e.grid_pairs), **scored.drawn}
        grids = figure_columns([row for row in rows if row.name in kept], drawn)
        comparisons = compare_rows(per_image["psnr"], nets.image_size)
        metrics = flat_metrics(table, shared.unavailable)
        if scored.failures:
            metrics["external_failures"] = scored.failures
        metrics["comparisons"] = {f"{c['a']}-vs-{c['b']}": {k: c[k] for k in (
            "mean_difference", "wins", "low", "high")} for c in comparisons}
        headline = headline_metrics(table)
        markdown = tables_markdown(table, shared.unavailable, e.dilations, params.alpha,
                                   params.train.mask_expansion, nets.image_size, comparisons)
        _write_reports(headline, metrics, markdown, {
            "names": list(dataset.pairs.names), "buckets": list(dataset.pairs.buckets),
            **per_image}, plot_rows(table, e.dilations), grids)
        _log_reports(run, headline, metrics, shared.unavailable)
    return headline


def _in_order(by_row: dict, names: list[str]) -> dict:
    return {name: by_row[name] for name in names}


def read_baselines(rows: list[Row], names: list[str]) -> dict:
    """reports/baselines.json, checked to hold ``rows`` scored on the pairs ``names``."""
    if not BASELINES.exists():
        raise MaskoptError(f"{BASELINES} not found; run `dvc repro evaluate_baselines`")
    saved = read_json(BASELINES)
    missing = [row.name for row in rows if row.name not in saved.get("table", {})]
    if missing or saved.get("names") != names:
        what = f"has no row {', '.join(missing)}" if missing else "scored other test pairs"
        raise MaskoptError(f"{BASELINES} {what}; run `dvc repro evaluate_baselines`")
    return saved


def _baseline_networks(params: Params, device, canny_sigma: float):
    """The arguments of :meth:`Sources.of` for the baselines: the pretrained and
    random-mask starting points and the fine-tuned random-mask inpainters (Table III),
    which fill with the pretrained segmenter's classes, as every baseline does; held as
    a removal holds them (:func:`hold_for_inference`)."""
    pretrained, random = (Networks.load_pretrained(
        SEGMENTER_FILE, {kind: inpainter_file(kind, masks) for kind in INPAINTERS},
        canny_sigma, device, stage) for masks, stage in (
            ("object", "pretrain_inpainter"), ("random", "pretrain_inpainter_random")))
    finetuned = {f"finetuned_{n}": replace(random, image=restore(
        load_model(finetuned_file(n), f"finetune_inpainter@{n}")["networks"]["generator"],
        source=str(finetuned_file(n))).to(device).eval()) for n in params.finetune.pairs}
    hold_for_inference(pretrained, random, *finetuned.values())
    weights = params.evaluate.edgeconnect_weights  # Table V's EdgeC, where a user has it
    fillers = {"edgeconnect": load_edgeconnect(weights, device)} if weights else {}
    return ({"pretrained": pretrained}, {"pretrained": pretrained, "random": random,
                                         **finetuned},
            {"random": "pretrained", **{name: "pretrained" for name in finetuned}}, fillers)


def _trained_networks(params: Params, device) -> Sources:
    """The baselines' networks (:func:`_baseline_networks`), the joint model and its
    w/o-MEL ablation."""
    joint = Networks.load(JOINT_FILE, device)
    without_mel = Networks.load(JOINT_WITHOUT_MEL_FILE, device, "train_joint_without_mel")
    hold_for_inference(joint, without_mel)
    segmenters, inpainters, classes_from, fillers = _baseline_networks(
        params, device, joint.canny_sigma)
    segmenters = {"joint": joint, **segmenters, "without_mel": without_mel}
    return Sources.of(segmenters, {**segmenters, **inpainters}, classes_from, fillers)


def _write_reports(headline: dict, metrics: dict, markdown: str, per_pair: dict,
                   plots: tuple[dict, dict], grids: dict) -> None:
    """reports/: the headline and all metrics, the tables, each row's PSNR and SSIM per
    pair with the pairs' names and buckets (the paper_report stage and `maskopt compare`
    test claims on them), the plots' points and the grids."""
    write_json(REPORTS / "metrics.json", headline)
    write_json(REPORTS / "evaluation.json", metrics)
    with atomic_path(REPORTS / "tables.md") as tmp:
        tmp.write_text(markdown)
    figures = {figure: [f"{figure}_{start:03d}.png" for start in range(
        0, len(columns.get(GRID_FIRST_COLUMN, [])), GRIDS_PER_IMAGE)]
        for figure, columns in grids.items()}
    write_json(REPORTS / "per_pair.json", per_pair)
    by_bucket, per_dilation = plots
    with atomic_path(REPORTS / "plots") as folder:
        for metric, points in by_bucket.items():
            write_json(folder / f"{metric}_by_bucket.json", points)
        write_json(folder / "dilation.json", per_dilation)
    with atomic_path(REPORTS / "grids") as folder:
        folder.mkdir()
        for figure, files in figures.items():
            for i, file in enumerate(files):
                part = {k: v[i * GRIDS_PER_IMAGE:(i + 1) * GRIDS_PER_IMAGE]
                        for k, v in grids[figure].items()}
                write_png(folder / file, labelled_grid(part))


def _log_reports(run, headline: dict, metrics: dict, unavailable: dict) -> None:
    """Headline metrics on the stage's run and the experiment's parent, the paired
    comparisons' mean differences, and every row × bucket as one table (not hundreds
    of metric keys: the runs table compares what matters)."""
    run.log_metrics({k: float(v) for k, v in flatten(headline).items()})
    run.log_parent_metrics({k: float(v) for k, v in flatten(headline).items()})
    run.log_metrics({f"comparison.{name}": c["mean_difference"]
                     for name, c in metrics.get("comparisons", {}).items()})
    run.log_table(results_table(metrics), "evaluation_table.json")
    run.set_tags({f"unavailable.{k}": v for k, v in unavailable.items()})
    run.log_artifact(REPORTS / "metrics.json")
    run.log_artifact(REPORTS / "evaluation.json")
    run.log_artifact(REPORTS / "tables.md")
    for path in sorted((REPORTS / "plots").rglob("*.json")):
        run.log_artifact(path, "plots")
    for path in sorted((REPORTS / "grids").glob("*.png")):
        run.log_artifact(path, "grids")


def results_table(metrics: dict) -> dict[str, list]:
    """evaluation.json's {row: {metric: {bucket: value}}} as columns of one table, a
    line per row and bucket (what MLflow's artifact view shows as a table)."""
    rows = {row: by_metric for row, by_metric in metrics.items()
            if row not in ("unavailable", "comparisons", "external_failures")}
    names = sorted({m for by_metric in rows.values() for m in by_metric})
    lines = sorted({(row, bucket) for row, by_metric in rows.items()
                    for by_bucket in by_metric.values() for bucket in by_bucket},
                   key=lambda line: (list(rows).index(line[0]), line[1]))
    return {"row": [r for r, _ in lines], "bucket": [b for _, b in lines],
            **{m: [rows[r].get(m, {}).get(b) for r, b in lines] for m in names}}
