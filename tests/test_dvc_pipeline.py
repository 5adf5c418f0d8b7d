"""The DVC pipeline itself: stages run, a second repro does nothing, params are scoped."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from browser import needs_chromium, rendered_dom, screenshot
from import_graph import needed_by, source_of
from tiny import TINY, apply

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
# where the page tests leave their screenshots (default: pytest's tmp_path)
SCREENSHOTS = os.environ.get("MASKOPT_SCREENSHOTS")


def run(cmd, cwd, env, timeout=900):
    """``cmd``'s stdout; a failure, or a run past ``timeout`` s (killed), fails the test."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(cmd)} ran past {timeout} s: {exc.stderr}") from None
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def set_params(project, **changes):
    path = project / "params.yaml"
    params = apply(yaml.safe_load(path.read_text()), changes)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def changed_stages(project, env):
    status = json.loads(run(["dvc", "status", "--json"], project, env))
    return {name.split(":")[-1] for name in status}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of this repository's pipeline in a fresh git + DVC repo, with tiny params."""
    project = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("stages", "src"):
        shutil.copytree(ROOT / folder, project / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (project / "reports").mkdir()
    # in git, not DVC: a sweep as scripts/alpha_sweep.py writes it (the committed one is
    # empty until a sweep runs), and no other seed's run
    (project / "reports" / "alpha_sweep.json").write_text(json.dumps([
        {"alpha": a, "psnr": 20.0 + a, "ssim": 0.75, "coverage": 0.6 + a, "added_area": a,
         "seed": 0, "commit": "test"} for a in (0.01, 0.03)]))
    (project / "reports" / "seeds.json").write_text("[]\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: the workspace's mlflow.db
    run(["git", "init", "-q"], project, env)
    run(["dvc", "init", "-q"], project, env)
    shutil.copytree(ROOT / ".dvc/plots", project / ".dvc/plots",  # the charts' templates
                    ignore=shutil.ignore_patterns("offline.html"))
    set_params(project, **TINY)
    run(["dvc", "repro", "--quiet"], project, env)
    return project, env


def test_repro_writes_pairs_and_metrics(project):
    project, _ = project
    report = json.loads((project / "reports" / "data.json").read_text())
    assert report["train"]["pairs"] == 12 and report["test"]["pairs"] == 8  # 4 held out
    assert len(list((project / "data/pairs/test/images").iterdir())) == 8


def test_validation_pairs_are_held_out_of_training_and_never_a_test_pair(project):
    import hashlib

    project, _ = project
    pairs = project / "data/pairs"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert "data/pairs" in [o["path"] for o in lock["stages"]["synthesize"]["outs"]]
    assert json.loads((project / "reports/data.json").read_text())["validation"]["pairs"] >= 1

    def used_images(split):
        annotations = json.loads((pairs / split / "annotations.json").read_text())
        return {i for a in annotations["annotations"]
                for i in (a["background_image_id"], a["source_image_id"])}

    def contents(split):
        return {hashlib.md5(p.read_bytes()).hexdigest()
                for p in (pairs / split / "images").iterdir()}

    assert used_images("validation") and not used_images("validation") & used_images("train")
    assert not contents("validation") & contents("test")


def test_second_repro_does_nothing(project):
    project, env = project
    assert changed_stages(project, env) == set()
    assert "didn't change" in run(["dvc", "repro"], project, env)


def test_repro_runs_every_stage(project):
    project, _ = project
    for model in ("segmenter", "inpainter_edge", "inpainter_segmentation", "inpainter_image",
                  "inpainter_random_edge", "inpainter_random_segmentation",
                  "inpainter_random_image", "joint", "joint_without_mel"):
        assert (project / "models" / f"{model}.pt").exists()
    full = json.loads((project / "reports" / "evaluation.json").read_text())
    assert {"joint", "starting_point", "gt_d0", "telea_pretrained_mask",
            "random_inpainters_gt_mask", "random_inpainters_pretrained_mask",
            "without_mel", "finetuned_4_gt_mask"} <= set(full)
    paper = (project / "reports" / "paper.md").read_text()
    assert "## Table II" in paper and "object > random masks" in paper
    assert "best_px" in (project / "reports" / "fixed_dilation_metrics.json").read_text()
    for stage in ("pretrain_segmentation", "pretrain_inpainter_image", "train_joint"):
        curve = json.loads((project / "reports" / "curves" / f"{stage}.json").read_text())
        assert curve and all("step" in point for point in curve)
    assert (project / "mlflow.db").exists()


def test_synthesize_param_reruns_only_synthesize(project):
    project, env = project
    before = yaml.safe_load((project / "params.yaml").read_text())["synthesize"]["blur_sigma"]
    set_params(project, **{"synthesize.blur_sigma": before + 0.5})
    # later stages follow through their dependency on data/pairs, not through params
    assert changed_stages(project, env) == {"synthesize"}
    set_params(project, **{"synthesize.blur_sigma": before})
    assert changed_stages(project, env) == set()


def test_alpha_reruns_only_joint_training_and_evaluation(project):
    project, env = project
    set_params(project, alpha=0.05)
    dry = run(["dvc", "repro", "--dry"], project, env)
    ran = {line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")}
    assert ran == {"train_joint", "train_joint_without_mel", "evaluate", "fixed_dilation",
                   "paper_report"}
    set_params(project, alpha=0.03)
    assert changed_stages(project, env) == set()


def test_a_new_alpha_sweep_reruns_only_the_paper_report(project):
    project, env = project
    sweep = project / "reports/alpha_sweep.json"
    original = sweep.read_text()
    rows = json.loads(original)
    rows[0]["psnr"] += 1
    sweep.write_text(json.dumps(rows))
    try:
        assert changed_stages(project, env) == {"paper_report"}
        run(["dvc", "repro", "paper_report"], project, env)
        paper = (project / "reports/paper.md").read_text()
        assert f"| PSNR | {rows[0]['psnr']:.2f} (" in paper
    finally:
        sweep.write_text(original)
        run(["dvc", "repro", "paper_report"], project, env)
    assert changed_stages(project, env) == set()


def test_random_mask_params_rerun_only_the_random_mask_inpainters(project):
    project, env = project
    set_params(project, **{"random_masks.max_ratio": 0.3})
    dry = run(["dvc", "repro", "--dry"], project, env)
    ran = {line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")}
    # evaluate follows through its dependency on their models, not through params
    assert ran == {"pretrain_inpainter_random@edge", "pretrain_inpainter_random@segmentation",
                   "pretrain_inpainter_random@image"}
    set_params(project, **{"random_masks.max_ratio": 0.4})
    assert changed_stages(project, env) == set()


# a value to try for each setting no stage's result depends on: the training stages'
# (pipeline.layout.RUN_ONLY, checked below) and two that only say how a stage works
RUN_ONLY = {"train.workers": 1, "train.log_every": 3, "train.checkpoint_every": 5,
            "train.grid_pairs": 2, "evaluate.grid_pairs": 3, "synthesize.workers": 2}


def test_run_only_settings_leave_every_stage_up_to_date(project):
    from maskopt.pipeline.layout import RUN_ONLY as TRAINING_RUN_ONLY

    assert set(RUN_ONLY) - {"evaluate.grid_pairs", "synthesize.workers"} == set(
        TRAINING_RUN_ONLY)
    project, env = project
    original = (project / "params.yaml").read_text()
    try:
        for key, value in RUN_ONLY.items():
            set_params(project, **{key: value})
            assert changed_stages(project, env) == set(), f"{key} invalidated a stage"
    finally:
        (project / "params.yaml").write_text(original)


def test_dvc_metrics_are_the_few_headline_numbers(project):
    project, env = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env))

    def numbers(value):
        if isinstance(value, dict):
            return sum(numbers(v) for v in value.values())
        return int(isinstance(value, int | float))

    files = shown[""]["data"]
    assert list(files) == ["reports/metrics.json", "reports/fixed_dilation_metrics.json"]
    assert 8 <= numbers(files) <= 15


ZOO = "src/maskopt/zoo"  # the sample's starting weights (segmenter.weights: sample-zoo)


def test_every_stage_depends_on_every_source_folder_it_imports():
    """Read from the source, imports inside functions included (a lazy import of the
    MLflow model once escaped a check that looked at what a stage had imported)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        # `python -m maskopt.pipeline.launch stages/x.py`: the launcher, then the script
        launcher, script = body["cmd"].split()[2:4]
        needed = {source_of(module) for path in (
            ROOT / "src" / f"{launcher.replace('.', '/')}.py", ROOT / script)
            for module in needed_by(path)}
        assert needed, name
        deps = [d for d in body["deps"] if d.startswith("src/") and d != ZOO]
        assert sorted(deps) == sorted(needed), f"stage {name}: deps {deps}, imports {needed}"
    # the zoo's weights are data, not imported: the stage that starts from them has them
    assert ZOO in stages["pretrain_segmentation"]["deps"]


TORCHVISION_AFTER_BUILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("stage", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
from maskopt.models.build import build
build(json.loads(sys.argv[2]))
print("torchvision" in sys.modules)
"""
IMAGE_INPAINTER = {"kind": "image", "num_classes": 5, "width": 8, "blocks": 1}
SEGMENTER = {"kind": "segmenter", "num_thing_classes": 1, "num_semantic_classes": 3,
             "depth": 18, "fpn_channels": 32, "image_size": 64, "weights": "none"}


def imports_torchvision(script: str, network: dict) -> bool:
    """Whether stages/``script`` has imported torchvision once it has built ``network``."""
    shown = subprocess.run([sys.executable, "-c", TORCHVISION_AFTER_BUILD, f"stages/{script}",
                            json.dumps(network)], cwd=ROOT, capture_output=True, text=True,
                           check=True, timeout=120)
    return shown.stdout.split() == ["True"]


@pytest.mark.parametrize("script", ["pretrain_inpainter.py", "finetune_inpainter.py"])
def test_a_stage_that_trains_an_inpainter_alone_does_not_import_torchvision(script):
    # torchvision's import (torch._dynamo) is 1.3 s of each such stage's start-up
    assert not imports_torchvision(script, IMAGE_INPAINTER)
    assert imports_torchvision(script, SEGMENTER)  # the check can tell


def _screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@needs_chromium
def test_plots_page_draws_every_chart_with_the_network_cut(project, tmp_path):
    project, env = project
    run([sys.executable, "-m", "maskopt.pipeline.offline_plots"], project, env)
    run(["dvc", "config", "plots.html_template", "plots/offline.html"], project, env)
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], project, env)
    page = tmp_path / "plots" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text()
    dom = rendered_dom(page.as_uri())
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    charts = [p for p in plots if isinstance(p, dict)]  # the rest are images
    assert dom.count('class="marks"') == len(charts), "a chart did not draw"
    for chart in charts:  # the axis titles are dvc.yaml's labels, not "x" and "y"
        (plot,) = chart.values()
        for label in (plot["x_label"], plot["y_label"]):
            assert label.replace("'", "&#39;") in dom or label in dom, label
    for image in (p for p in plots if isinstance(p, str)):  # copied beside the page
        assert image.replace("/", "_") in dom, f"{image} is not on the page"
    assert "Error" not in dom.split("</style>")[-1]  # vega-embed writes errors into the page
    screenshot(page.as_uri(), _screenshot_path(tmp_path, "dvc-plots-offline.png"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, seconds: float = 90) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not come up")


@needs_chromium
def test_an_alpha_experiment_in_a_temp_copy_lands_in_the_workspace_store_and_the_ui(
        project, tmp_path):
    """`dvc exp run --temp` runs in a copy under .dvc/tmp/exps/ with the executor that
    queued experiments use (scripts/alpha_sweep.py queues them); its runs must land in
    the workspace's store. (The queue's own worker is a daemon DVC spawns; the test
    runs the experiment in the foreground, so that it cannot outlive a timeout.)"""
    import urllib.parse

    import mlflow

    project, env = project
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "baseline"], project, env)
    run(["dvc", "exp", "run", "--temp", "-S", "alpha=0.05", "-n", "alpha-0p05"], project, env)

    store = f"sqlite:///{project}/mlflow.db"
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("maskopt")
    parents = {r.data.params["alpha"]: r for r in client.search_runs(
        [experiment.experiment_id], "tags.`maskopt.parent` != ''")}
    assert parents["0.05"].info.run_name == "alpha-0p05"  # the temp copy's run, in this store
    assert "0.03" in parents
    for parent in (parents["0.03"], parents["0.05"]):
        assert "psnr.joint" in parent.data.metrics
    versions = client.search_model_versions("name = 'maskopt-joint'")
    assert len(versions) >= 2  # one per experiment
    assert len(client.search_runs([experiment.experiment_id],  # the ablation's stage too
                                  "tags.`maskopt.parent` = 'alpha-0p05'")) == 1
    version = client.get_model_version_by_alias("maskopt-joint", "alpha-0p05")
    assert version.tags["alpha"] == "0.05" and version.tags["experiment"] == "alpha-0p05"

    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", store,
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health")
        ids = json.dumps([parents["0.03"].info.run_id, parents["0.05"].info.run_id])
        url = (f"http://127.0.0.1:{port}/#/compare-runs?runs={urllib.parse.quote(ids)}"
               f"&experiments={urllib.parse.quote(json.dumps([experiment.experiment_id]))}")
        dom = rendered_dom(url, budget_ms=30000)
        assert "alpha-0p05" in dom and "workspace" in dom
        assert "0.05" in dom and "0.03" in dom and "psnr.joint" in dom
        for parent in (parents["0.03"], parents["0.05"]):
            assert f"{parent.data.metrics['psnr.joint']:.2f}"[:4] in dom
        screenshot(url, _screenshot_path(tmp_path, "mlflow-compare.png"), budget_ms=30000)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_per_bucket_plots_draw_the_rows_the_row_table_marks():
    from maskopt.evaluation.rows import ROWS, evaluation_rows

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows = evaluation_rows(params["evaluate"]["dilations"], [], [], {
        row.mask for row in ROWS} | {row.inpainter for row in ROWS})
    marked = [row.plotted for row in rows if row.plotted]
    plots = {title: plot for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
             for title, plot in entry.items()}
    for metric in ("PSNR", "SSIM"):
        (series,) = plots[f"{metric} per mask-ratio bucket"]["y"].values()
        assert series == marked, metric
    for title, plot in plots.items():  # every axis says what it shows
        assert plot.get("x_label") and plot.get("y_label"), title


def test_a_baseline_made_here_shows_alpha_and_only_alpha(project):
    """`make pipeline` saves this machine's run as `baseline`; an α experiment compared
    with it changes the joint model and leaves the rows α cannot reach at 0.00."""
    project, env = project
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "results", "--allow-empty"], project, env)
    run(["maskopt", "repro", "--baseline"], project, env)
    run(["maskopt", "repro", "--baseline"], project, env)  # a second one replaces it
    run(["dvc", "exp", "run", "-S", "alpha=0.05", "-n", "alpha-5"], project, env)
    diff = json.loads(run(["dvc", "exp", "diff", "baseline", "alpha-5", "--json"], project,
                          env))
    changed = diff["metrics"].get("reports/metrics.json", {})  # tiny: the joint model may
    assert "psnr.starting_point" not in changed  # find nothing at either α; these never move
    assert "psnr.telea_pretrained_mask" not in changed
    assert diff["params"]["params.yaml"]["alpha"]["diff"] == pytest.approx(0.02)
    same = run(["maskopt", "compare", "baseline", "baseline"], project, env)
    assert same.count("+0.00 [+0.00, +0.00]") == 6 and "| yes |" not in same
    versus = run(["maskopt", "compare", "baseline", "alpha-5"], project, env)
    lines = {tuple(cell.strip() for cell in line.split("|")[1:3]): line
             for line in versus.splitlines() if line.startswith("| ")}
    assert "+0.00 [+0.00, +0.00]" in lines[("starting_point", "PSNR")]
    assert ("joint", "SSIM") in lines
    empty_tree = run(["git", "hash-object", "-t", "tree", "/dev/null"], project, env).strip()
    bare = run(["git", "commit-tree", empty_tree, "-m", "nothing"], project, env).strip()
    failed = subprocess.run(["maskopt", "compare", bare], cwd=project, env=env,
                            capture_output=True, text=True)
    assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1
    assert f"{bare}: has no reports/per_pair.json" in failed.stderr
    command = next(line.split("#")[0].split() for line in
                   (ROOT / "README.md").read_text().splitlines() if "dvc exp show" in line)
    show = run(["dvc", *(arg.strip("'") for arg in command[1:])], project,
               {**env, "COLUMNS": "120"})
    assert "baseline" in show and "alpha-5" in show and "alpha" in show
    assert "…" not in show and max(map(len, show.splitlines())) <= 120, show
