"""Evaluation metrics on known inputs, the unavailable-network path, and the stage outputs."""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import tiny_params
from torch import nn

from maskopt.evaluation.evaluate import flat_metrics
from maskopt.evaluation.image_metrics import BucketMetrics, SharedNetworks, psnr, ssim
from maskopt.evaluation.masks import mask_metrics
from maskopt.evaluation.report import tables_markdown
from maskopt.models.inference import grow_mask


def offline():
    raise OSError("no network")


class TinyFeatures(nn.Module):
    """Stands in for InceptionV3: uint8 images → 8 features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.linear = nn.Linear(12, 8)

    def forward(self, images):
        return self.linear(self.pool(images.float() / 255).flatten(1))


class MeanAbsDifference(nn.Module):
    """Stands in for LPIPS: per-image mean |a - b|."""

    def forward(self, a, b):
        return (a - b).abs().mean(dim=(1, 2, 3))


def test_psnr_and_ssim_on_known_inputs():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32) * 0.8
    assert psnr(image, image).tolist() == [100.0, 100.0]  # identical: capped
    shifted = image + 0.1  # MSE 0.01 → 20 dB
    assert psnr(shifted, image).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert ssim(image, image).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert (ssim(torch.rand(2, 3, 32, 32), image) < 0.5).all()


def test_unavailable_networks_are_reported_not_invented():
    shared = SharedNetworks(lpips_factory=offline, fid_features=offline)
    assert set(shared.unavailable) == {"lpips", "fid"}
    assert "no network" in shared.unavailable["lpips"]
    metrics = BucketMetrics(shared)
    image = torch.rand(2, 3, 32, 32)
    metrics.update(image, image, ["0-10", "10-20"])
    result = metrics.result()
    assert "lpips" not in result["all"] and "fid" not in result["all"]
    flat = flat_metrics({"joint": result}, shared.unavailable)
    assert flat["unavailable"]["fid"].startswith("pretrained weights could not be loaded")
    markdown = tables_markdown({"joint": result}, shared.unavailable, [0], 0.03, True, 32)
    assert "Unavailable: pretrained weights could not be loaded" in markdown


def test_lpips_and_fid_mechanics_with_injected_networks():
    shared = SharedNetworks(lpips_factory=MeanAbsDifference, fid_features=TinyFeatures)
    assert shared.unavailable == {}
    torch.manual_seed(1)
    same, different = BucketMetrics(shared), BucketMetrics(shared)
    target = torch.rand(8, 3, 32, 32)
    same.update(target, target, ["0-10"] * 8)
    different.update(torch.rand(8, 3, 32, 32) * 0.3, target, ["0-10"] * 8)
    a, b = same.result()["0-10"], different.result()["0-10"]
    assert a["lpips"] == pytest.approx(0.0) and b["lpips"] > 0.1
    assert abs(a["fid"]) < 1e-3 and b["fid"] > a["fid"] + 0.01


def test_mask_metrics_on_a_square_grown_by_two_pixels():
    gt = np.zeros((40, 40), bool)
    gt[10:20, 10:20] = True
    mask = grow_mask(torch.from_numpy(gt).float()[None, None], 2)[0, 0].numpy() > 0.5
    m = mask_metrics(mask, gt)
    assert m["coverage"] == 1.0 and m["precision"] == pytest.approx(100 / mask.sum())
    assert m["added_area"] == pytest.approx((mask.sum() - 100) / 1600)
    assert 1.0 <= m["expansion_px"] <= 2.0
    shrunk = grow_mask(torch.from_numpy(gt).float()[None, None], -2)[0, 0].numpy() > 0.5
    s = mask_metrics(shrunk, gt)
    assert s["coverage"] == pytest.approx(36 / 100) and s["precision"] == 1.0
    assert s["added_area"] == 0 and s["expansion_px"] == 0


def test_table_one_rows_use_the_pretrained_inpainters(trained_project, monkeypatch):
    from maskopt.data.pairs import PairDataset
    from maskopt.evaluation import engine
    from maskopt.evaluation.evaluate import evaluate_pairs
    from maskopt.evaluation.rows import evaluation_rows
    from maskopt.models.inference import Networks

    monkeypatch.chdir(trained_project)
    joint = Networks.load("models/joint.pt")
    pretrained = Networks.load_pretrained(
        "models/segmenter.pt", {k: Path(f"models/inpainter_{k}.pt")
                                for k in ("edge", "segmentation", "image")}, 1.0)
    calls = []
    real_inpaint = engine.inpaint

    def recording(nets, images, masks, semantic, guides=None):
        calls.append((nets, masks))
        return real_inpaint(nets, images, masks, semantic, guides)

    monkeypatch.setattr(engine, "inpaint", recording)
    shared = SharedNetworks(lpips_factory=offline, fid_features=offline)
    dataset = PairDataset(trained_project / "data/pairs/test")
    dataset.pairs = dataset.pairs[:2]
    both = {"joint": joint, "pretrained": pretrained}
    sources = engine.Sources.of(both, both, {})
    rows = evaluation_rows([-2, 0], [], [], sources.names())
    table, per_image, _, _ = evaluate_pairs(rows, sources, dataset, shared)
    assert {"gt_d-2", "gt_d0", "joint", "starting_point"} <= set(table)
    assert set(per_image) == {"psnr", "ssim"}  # no LPIPS network: no LPIPS per pair
    with_lpips = SharedNetworks(lpips_factory=MeanAbsDifference, fid_features=offline)
    _, per_image, _, _ = evaluate_pairs([r for r in rows if r.name == "joint"], sources,
                                        dataset, with_lpips)
    assert len(per_image["lpips"]["joint"]) == 2 and min(per_image["lpips"]["joint"]) > 0
    gt = torch.stack([dataset[i]["mask"] for i in range(2)])
    on_gt = [nets for nets, masks in calls if torch.equal(masks, gt)]
    assert on_gt and all(nets is pretrained for nets in on_gt)
    assert {id(nets) for nets, _ in calls} == {id(joint), id(pretrained)}


def test_baselines_scored_apart_give_the_one_pass_numbers_and_images(trained_project,
                                                                      monkeypatch, tmp_path):
    """evaluate_baselines and evaluate score their rows apart; merged, they are what one
    pass over every row gives, and the baseline rows' grid images, drawn from the first
    batch alone, are the one pass's too."""
    from maskopt.core.errors import MaskoptError
    from maskopt.data.pairs import PairDataset
    from maskopt.evaluation import engine, run
    from maskopt.evaluation.evaluate import draw_rows, score_rows
    from maskopt.evaluation.rows import evaluation_rows, is_baseline
    from maskopt.models.inference import Networks

    monkeypatch.chdir(trained_project)
    joint = Networks.load("models/joint.pt")
    pretrained = Networks.load_pretrained(
        "models/segmenter.pt", {k: Path(f"models/inpainter_{k}.pt")
                                for k in ("edge", "segmentation", "image")}, 1.0)
    shared = SharedNetworks(lpips_factory=offline, fid_features=offline)
    dataset = PairDataset(trained_project / "data/pairs/test")
    dataset.pairs = dataset.pairs[:10]  # two batches
    both = {"joint": joint, "pretrained": pretrained}
    sources = engine.Sources.of(both, both, {})
    rows = evaluation_rows([-1, 0, 1], [], [], sources.names())
    baselines = [row for row in rows if is_baseline(row)]
    assert {row.name for row in baselines} >= {"starting_point", "gt_d0", "telea_gt_mask"}
    assert not {"joint", "telea_joint_mask", "joint_inpainters_pretrained_mask"} & {
        row.name for row in baselines}
    whole = score_rows(rows, sources, dataset, shared, grid_pairs=3)
    apart = [score_rows(part, sources, dataset, shared, grid_pairs=0)
             for part in (baselines, [row for row in rows if not is_baseline(row)])]
    for metric, by_row in whole.per_image.items():
        assert by_row == {**apart[0].per_image[metric], **apart[1].per_image[metric]}
    assert whole.table == {**apart[0].table, **apart[1].table}
    drawn = draw_rows(baselines, sources, dataset, 3)
    for row in baselines:
        assert len(drawn[row.name]) == 3
        assert all(torch.equal(a, b) for a, b in zip(drawn[row.name], whole.drawn[row.name],
                                                      strict=True))
    # the evaluate stage refuses baselines of other rows or other pairs, by the stage's name
    monkeypatch.setattr(run, "BASELINES", tmp_path / "baselines.json")
    names = list(dataset.pairs.names)
    with pytest.raises(MaskoptError, match="not found; run `dvc repro evaluate_baselines`"):
        run.read_baselines(baselines, names)
    (tmp_path / "baselines.json").write_text(json.dumps(
        {"names": names, "table": {"gt_d0": {}}, "per_image": {}}))
    with pytest.raises(MaskoptError, match="has no row starting_point"):
        run.read_baselines(baselines, names)
    with pytest.raises(MaskoptError, match="scored other test pairs"):
        run.read_baselines([row for row in baselines if row.name == "gt_d0"], names[:5])


def test_rows_that_share_edge_and_segmentation_inpainters_share_their_guides(
        trained_project, monkeypatch):
    """Table III's fine-tuned rows differ from the random-mask row in the image
    inpainter alone: their guides are made once per batch, and each fill is what the
    whole chain gives."""
    from dataclasses import replace

    from maskopt.data.pairs import PairDataset
    from maskopt.evaluation import engine
    from maskopt.evaluation.rows import evaluation_rows
    from maskopt.models.inference import Networks, inpaint

    monkeypatch.chdir(trained_project)
    joint = Networks.load("models/joint.pt")
    pretrained = Networks.load_pretrained(
        "models/segmenter.pt", {k: Path(f"models/inpainter_{k}.pt")
                                for k in ("edge", "segmentation", "image")}, 1.0)
    tuned = replace(pretrained, image=joint.image)  # another image inpainter, same guides
    made = []
    real_guides = engine.inpaint_guides
    monkeypatch.setattr(engine, "inpaint_guides",
                        lambda *args: made.append(args[0]) or real_guides(*args))
    dataset = PairDataset(trained_project / "data/pairs/test")
    dataset.pairs = dataset.pairs[:2]
    sources = engine.Sources.of({"pretrained": pretrained},
                                {"random": pretrained, "finetuned_7": tuned},
                                {"random": "pretrained", "finetuned_7": "pretrained"})
    rows = [r for r in evaluation_rows([], [7], [], sources.names())
            if r.name in ("random_inpainters_gt_mask", "finetuned_7_gt_mask")]
    assert len(rows) == 2
    batch = next(engine.fill_rows(rows, sources, dataset))
    assert len(made) == 1  # one batch, one set of guides for both rows
    _, _, classes = engine.selected(batch.pairs, sources.segmenters)
    images, gt = batch.pairs["image"], batch.pairs["mask"]
    alone = inpaint(tuned, images, gt, classes["pretrained"])
    assert torch.equal(batch.fills["finetuned_7_gt_mask"], alone)
    assert torch.equal(batch.fills["random_inpainters_gt_mask"],
                       inpaint(pretrained, images, gt, classes["pretrained"]))
    assert not torch.equal(alone, batch.fills["random_inpainters_gt_mask"])


def test_evaluate_stage_writes_metrics_tables_plots_and_grids(trained_project, monkeypatch,
                                                               tmp_path):
    from test_edgeconnect import write_checkpoints

    from maskopt.evaluation import image_metrics
    from maskopt.evaluation.fixed_dilation_run import fixed_dilation
    from maskopt.evaluation.paper_report import paper_report
    from maskopt.evaluation.run import evaluate, evaluate_baselines

    monkeypatch.chdir(trained_project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_project}/mlflow.db")
    monkeypatch.setattr(image_metrics, "default_lpips", offline)
    monkeypatch.setattr(image_metrics, "default_fid_features", offline)
    stand_in = f"{sys.executable} {Path(__file__).with_name('stand_in_inpainter.py')} " \
               "--image {images} --mask {masks} --output {output}"
    write_checkpoints(tmp_path)  # EdgeConnect's files, random weights
    params = tiny_params(**{"evaluate.external_inpainters": {"stand_in": stand_in},
                            "evaluate.edgeconnect_weights": str(tmp_path)})
    baselines = evaluate_baselines(params)  # the stage before: the rows without a joint model
    assert "gt_d0" in baselines and "joint" not in baselines
    headline = evaluate(params)
    paper_report(params)  # the next stage: reports/paper.md from what evaluate wrote
    paper = Path("reports/paper.md").read_text()
    assert "| PSNR | OpenCV Telea | OpenCV NS | random-mask nets | EdgeC |" in paper
    assert "- Ours > EdgeC: mean difference" in paper
    fixed_headline = fixed_dilation(params)  # the stage beside evaluate
    assert json.loads(Path("reports/metrics.json").read_text()) == headline
    saved = json.loads(Path("reports/evaluation.json").read_text())
    # the headline file: ~10 numbers, each the same as in the full evaluation
    assert sum(len(group) for group in headline.values()) == 10
    # headline: 4 digits of the full value; evaluation.json: 5 digits (rounded twice here)
    assert headline["psnr"]["joint"] == pytest.approx(saved["joint"]["psnr"]["all"], abs=1e-4)
    assert headline["psnr"]["telea_pretrained_mask"] == pytest.approx(
        saved["telea_pretrained_mask"]["psnr"]["all"], abs=1e-4)
    assert headline["mask"]["coverage"] == saved["joint"]["mask_coverage"]["all"]
    for row in ("joint", "starting_point", "gt_d0", "gt_d-1", "telea_pretrained_mask",
                "edgeconnect_pretrained_mask",
                "ns_pretrained_mask", "telea_joint_mask", "telea_gt_mask"):
        assert 0 < saved[row]["psnr"]["all"] <= 100
    # baselines get the mask of the row they are compared with
    for row, same_mask in (("telea_pretrained_mask", "starting_point"),
                           ("ns_pretrained_mask", "starting_point"),
                           ("telea_joint_mask", "joint"), ("telea_gt_mask", "gt_d0")):
        assert saved[row]["mask_iou"] == saved[same_mask]["mask_iou"]
        assert saved[row]["mask_fallback_rate"] == saved[same_mask]["mask_fallback_rate"]
    assert saved["gt_d0"]["mask_fallback_rate"]["all"] == 0.0
    assert set(saved["comparisons"]) >= {"joint-vs-starting_point", "gt_d0-vs-telea_gt_mask"}
    # the ground-truth mask itself covers the object exactly
    assert saved["gt_d0"]["mask_coverage"]["all"] == 1.0
    assert saved["gt_d0"]["mask_added_area"]["all"] == 0.0
    assert saved["gt_d2"]["mask_expansion_px"]["all"] > 1
    assert set(saved["unavailable"]) == {"lpips", "fid"}
    tables = Path("reports/tables.md").read_text()
    assert "paper: Ours" in tables and "fallback rate" in tables
    assert "`starting_point`: paper's starting point (pretrained segmenter's mask, " \
           "pretrained inpainters)" in tables
    assert "`gt_d-1`: pretrained inpainters, ground-truth mask eroded by 1 px" in tables
    assert "| joint beats the paper's starting point" not in tables  # named with MEL
    assert "joint + MEL beats the paper's starting point" in tables
    dilation = json.loads(Path("reports/plots/dilation.json").read_text())
    assert [p["d"] for p in dilation] == [-1, 0, 1, 2, 3, 4]
    by_bucket = json.loads(Path("reports/plots/psnr_by_bucket.json").read_text())
    assert {"joint model", "starting point", "pretrained inpainters, exact GT mask"} <= set(
        by_bucket[0])  # each plotted row a series, by its name
    assert sorted(p.name for p in Path("reports/grids").iterdir())[0] == "figure_1_000.png"
    paper = Path("reports/paper.md").read_text()
    assert "The paper's SSIM:" in paper  # Table III's second half
    for figure in ("figure_1", "pairs", "table_v"):
        assert Path(f"reports/grids/{figure}_000.png").exists()
    assert "![Fig. 1](grids/figure_1_000.png)" in paper
    assert "![Fig. 4](grids/table_v_000.png)" in paper
    # Table IV without a sweep says how to make one; Fig. 3 is drawn
    assert "## Table IV" in paper and "`scripts/alpha_sweep.py`" in paper
    assert "![Fig. 3](figure_3.png)" in paper and Path("reports/figure_3.png").exists()
    # the claims are tested on the same per-pair PSNRs evaluate wrote
    per_pair = json.loads(Path("reports/per_pair.json").read_text())
    assert len(per_pair["buckets"]) == len(per_pair["psnr"]["joint"]) == 8
    # Fig. 1: one pair; input, the masks and fills of d = -1, 0, 1 (the paper's ±2 px at
    # 256 px, whole pixels at 32), the target
    figure_1 = np.asarray(Image.open("reports/grids/figure_1_000.png"))
    assert figure_1.shape[1] == 8 * 130 and figure_1.shape[0] < 2 * 130
    # Fig. 4: input, mask, Telea, NS, random-mask nets, EdgeC, the external one, w/o MEL's
    # mask and fill, Ours' mask and fill, target
    assert {"random_inpainters_pretrained_mask", "without_mel",
            "external_stand_in_pretrained_mask"} <= set(saved)
    assert np.asarray(Image.open("reports/grids/table_v_000.png")).shape[1] == 12 * 130
    assert_fixed_dilation_report(saved, fixed_headline)


def assert_fixed_dilation_report(saved: dict, headline: dict) -> None:
    """reports/fixed_dilation.*: d* from the validation pairs, the learned mask against it."""
    fixed = json.loads(Path("reports/fixed_dilation.json").read_text())
    assert fixed["dilations"] == list(range(7))  # params.yaml: 0 … 6 px
    assert set(fixed["best"]) == {"pretrained", "joint", "telea", "stand_in"}
    assert fixed["test_pairs"] == 8 and 1 <= fixed["validation_pairs"] <= 4
    for inpainter, d in fixed["best"].items():  # d*: the best on validation, not on test
        validation = fixed["psnr"]["validation"][inpainter]
        assert validation[str(d)] == max(validation[str(x)] for x in fixed["dilations"])
    # the test pairs are filled at d* and with the learned mask only; the learned mask
    # (and d = 0, where it is d*) are rows of the main table: the same numbers
    test = fixed["psnr"]["test"]
    for inpainter, d in fixed["best"].items():
        assert set(test[inpainter]) == {str(d), "learned"}
    for inpainter, mask, row in (("pretrained", "0", "starting_point"),
                                 ("telea", "0", "telea_pretrained_mask"),
                                 ("joint", "learned", "joint"),
                                 ("telea", "learned", "telea_joint_mask")):
        if mask in test[inpainter]:
            assert abs(test[inpainter][mask] - saved[row]["psnr"]["all"]) < 1e-4, (inpainter,
                                                                                   row)
    versus = fixed["learned_vs_best"]["pretrained"]
    assert set(versus) == {"all", "0-10", "10-20", "20-30", "30-40"}
    assert versus["all"]["images"] == 8
    assert versus["all"]["low"] <= versus["all"]["mean_difference"] <= versus["all"]["high"]
    shares = {k: v["mean_difference"] for k, v in fixed["shares"].items()}
    assert abs(shares["total"] - shares["mask"] - shares["inpainters"]) < 1e-9
    assert headline == json.loads(Path("reports/fixed_dilation_metrics.json").read_text()) == {
        "fixed_dilation": {"best_px": fixed["best"]["pretrained"],
                           "learned_minus_best": round(versus["all"]["mean_difference"], 4)}}
    markdown = Path("reports/fixed_dilation.md").read_text()
    assert "![PSNR against d](fixed_dilation.png)" in markdown
    assert "| external stand_in |" in markdown
    points = json.loads(Path("reports/fixed_dilation_points.json").read_text())
    assert [p["d"] for p in points] == fixed["dilations"]
    plot = np.asarray(Image.open("reports/fixed_dilation.png"))
    assert plot.shape[0] > 300 and plot.std() > 0


def test_fig_4_columns_put_external_inpainters_before_ours():
    from maskopt.evaluation.evaluate import figure_columns
    from maskopt.evaluation.rows import evaluation_rows

    have = {"pretrained", "joint", "without_mel", "gt", "random"}
    rows = evaluation_rows([-2, -1, 0, 1, 2], [], ["lama"], have)
    image = torch.zeros(3, 128, 128)  # the paper's 2 px at 256 px: 1 px here
    drawn = defaultdict(lambda: [image, image])
    columns = figure_columns(rows, drawn)
    lama = "external_lama_pretrained_mask"
    assert list(columns["table_v"]) == [
        "input I", "pretrained mask", "telea_pretrained_mask", "ns_pretrained_mask",
        "random_inpainters_pretrained_mask", lama, "without_mel mask", "without_mel",
        "joint mask", "joint", "ground truth I_G"]
    assert list(columns["pairs"]) == [
        "input I", "pretrained mask", "joint mask", "starting point", "Telea, pretr. mask",
        "Telea, joint mask", "joint", "ground truth I_G"]
    assert list(columns["figure_1"])[1:4] == ["mask gt_d-1", "mask gt_d0", "mask gt_d1"]
    assert len(columns["table_v"][lama]) == 2 and len(columns["figure_1"]["gt_d0"]) == 1


def test_a_row_needs_its_mask_and_its_inpainter():
    from maskopt.evaluation.rows import ROWS, evaluation_rows, row_named

    names = [row.name for row in evaluation_rows([0], [20], [], {"pretrained", "gt"})]
    assert names == ["starting_point", "telea_pretrained_mask", "ns_pretrained_mask",
                     "telea_gt_mask", "gt_d0"]
    for row in ROWS:
        assert row_named(row.name) == row
    assert row_named("finetuned_20_gt_mask").inpainter == "finetuned_20"
    assert row_named("external_lama_pretrained_mask").external == "lama"
    assert row_named("gt_d-2").grow == -2 and row_named("comparisons") is None


def test_long_column_names_wrap_inside_their_tile():
    from maskopt.evaluation.report import labelled_grid

    tile = torch.zeros(3, 8, 8)
    short = labelled_grid({"input I": [tile]}, tile=64)
    long = labelled_grid({"random_inpainters_pretrained_mask": [tile]}, tile=64)
    assert long.shape[1] == short.shape[1] == 66
    assert long.shape[0] > short.shape[0]  # more header lines, none wider than the tile


def test_compare_pairs_the_headline_rows_of_two_runs():
    from maskopt.core.errors import MaskoptError
    from maskopt.evaluation.compare import compare_markdown, compare_runs

    rng = np.random.default_rng(0)
    names = [f"{i:07d}" for i in range(50)]

    def run(joint_shift):
        base = {row: list(20 + rng.normal(0, 1, 50)) for row in ("starting_point", "joint")}
        psnr = {**base, "joint": [v + joint_shift for v in base["joint"]]}
        return {"names": names, "psnr": psnr, "ssim": {k: [v / 30 for v in vs]
                                                        for k, vs in psnr.items()}}

    a = run(0.0)
    b = {**a, "psnr": {**a["psnr"], "joint": [v + 0.5 + rng.normal(0, 0.3)
                                              for v in a["psnr"]["joint"]]}}
    by = {(c["row"], c["metric"]): c for c in compare_runs(a, b)}
    assert by[("starting_point", "psnr")]["low"] == by[("starting_point", "psnr")]["high"] == 0
    joint = by[("joint", "psnr")]
    assert 0 < joint["low"] < joint["mean_difference"] < joint["high"] and joint["wins"] > 40
    text = compare_markdown("baseline", "alpha-0p05", list(by.values()))
    assert "| starting_point | PSNR | +0.00 [+0.00, +0.00] | 0/50 | no |" in text
    with pytest.raises(MaskoptError, match="different test pairs"):
        compare_runs(a, {**b, "names": names[::-1]})
