"""`maskopt repro`: independent DVC stages side by side, in dependency order, with the
result a plain `dvc repro` writes."""

import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.params import load_params
from maskopt.pipeline.repro import (
    Scheduler,
    parse_dag,
    priorities,
    progress,
    repro,
    set_params,
    stage_costs,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"

DOT = """strict digraph {
"download";
"synthesize";
"segmenter";
"inpainter@edge";
"report";
"download" -> "synthesize";
"synthesize" -> "segmenter";
"synthesize" -> "inpainter@edge";
"segmenter" -> "report";
"inpainter@edge" -> "report";
}
"""


def test_parse_dag_reads_stages_and_their_upstream():
    assert parse_dag(DOT) == {"download": set(), "synthesize": {"download"},
                              "segmenter": {"synthesize"}, "inpainter@edge": {"synthesize"},
                              "report": {"segmenter", "inpainter@edge"}}
    assert parse_dag('strict digraph {\n"only";\n}\n') == {"only": set()}
    with pytest.raises(MaskoptError, match="no stages"):
        parse_dag("strict digraph {\n}\n")


def test_longest_chains_first():
    upstream = {"a": set(), "long1": {"a"}, "long2": {"long1"}, "short": {"a"},
                "end": {"long2", "short"}}
    assert priorities(upstream) == {"a": 4, "long1": 3, "long2": 2, "short": 2, "end": 1}


def test_costly_chains_first(tmp_path):
    """dvc.yaml's ``meta: {cost}`` weighs each stage (a foreach stage's for every key):
    one long stage outranks two short ones."""
    upstream = {"a": set(), "long": {"a"}, "short@x": {"a"}, "after_short": {"short@x"}}
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(textwrap.dedent("""
        stages:
          long: {cmd: x, meta: {cost: 300}}
          short: {foreach: [x], do: {cmd: y, meta: {cost: 60}}}
          after_short: {cmd: z}
    """))
    cost = stage_costs(dvc_yaml, list(upstream))
    assert cost == {"long": 300, "short@x": 60}
    assert priorities(upstream, cost) == {"a": 301, "long": 300, "short@x": 61,
                                          "after_short": 1}
    assert stage_costs(tmp_path / "none.yaml", ["a"]) == {}


def test_progress_is_the_last_bar_drawn():
    tail = "seg:  10%|█         | 30/300 [00:10<01:30]\rseg:  45%|████▌     | 135/300 [00:45"
    assert progress(tail) == "45% 135/300"
    assert progress("Running stage 'segmenter':") is None


def _recording_command(record: Path, failing: str | None = None, seconds: dict | None = None):
    """Each stage appends (stage, start, end, OMP threads) to ``record`` after
    ``seconds[stage]`` (0.6 s unless given)."""
    def command(stage):
        script = textwrap.dedent(f"""
            import json, os, sys, time
            start = time.time()
            time.sleep({(seconds or {}).get(stage, 0.6)})
            with open({str(record)!r}, "a") as f:
                f.write(json.dumps([{stage!r}, start, time.time(),
                                    os.environ["OMP_NUM_THREADS"]]) + "\\n")
            print("{stage}: 100%|##########| 4/4 [00:00<00:00]")
            if {stage!r} == {failing!r}:
                print("something named in the log went wrong", file=sys.stderr)
                sys.exit(3)
        """)
        return [sys.executable, "-c", script]
    return command


def _read(record: Path) -> dict:
    return {stage: (start, end, int(threads)) for stage, start, end, threads
            in map(json.loads, record.read_text().splitlines())}


def test_stages_run_after_their_upstream_two_at_a_time(tmp_path):
    upstream = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"a"}, "e": {"b", "c", "d"}}
    record, out = tmp_path / "record.jsonl", io.StringIO()
    # c outlasts b by far: d starts when b ends, beside c
    code = Scheduler(upstream, jobs=2, cores=2,
                     command=_recording_command(record, seconds={"c": 1.8}),
                     log_dir=tmp_path / "logs", out=out).run(status_every=0.1)
    assert code == 0
    runs = _read(record)
    assert set(runs) == set(upstream)
    for stage, befores in upstream.items():
        for before in befores:
            assert runs[before][1] <= runs[stage][0], f"{stage} started before {before} ended"
    spans = sorted((start, end) for start, end, _ in runs.values())
    for i, (start, _) in enumerate(spans):  # never three at once
        assert sum(s <= start < e for s, e in spans[:i]) <= 1
    assert runs["b"][0] < runs["c"][1] and runs["c"][0] < runs["b"][1]  # b, c overlapped
    # alone: both cores; beside another stage: one each
    assert {s: runs[s][2] for s in upstream} == {"a": 2, "b": 1, "c": 1, "d": 1, "e": 2}
    assert "all 5 stages done" in out.getvalue()
    assert "4/4" in (tmp_path / "logs" / "b.log").read_text()


def test_a_failed_stage_stops_new_ones_and_keeps_those_running(tmp_path):
    upstream = {"a": set(), "b": {"a"}, "c": {"a"}, "e": {"b", "c"}}
    record, out = tmp_path / "record.jsonl", io.StringIO()
    code = Scheduler(upstream, jobs=2, cores=2,
                     command=_recording_command(record, failing="c"),
                     log_dir=tmp_path / "logs", out=out).run()
    assert code == 1
    assert set(_read(record)) == {"a", "b", "c"}  # b ran to its end beside the failure
    text = out.getvalue()
    assert "FAILED c (exit 3)" in text and "something named in the log went wrong" in text
    assert "not run: e" in text
    with pytest.raises(MaskoptError, match="at least 1"):
        Scheduler(upstream, jobs=0, cores=2, command=_recording_command(record))


def _dvc_project(root: Path) -> None:
    """A DVC project of three stages: ``prepare`` and, beside each other after it,
    ``left`` and ``right``, each noting when it ran."""
    stage = textwrap.dedent("""
        import json, os, sys, time
        start = time.time()
        time.sleep(2)
        text = open(sys.argv[1]).read() if len(sys.argv) > 2 else ""
        open(sys.argv[-1], "w").write(json.dumps([start, time.time(), text,
                                                  os.environ.get("DVC_EXP_NAME")]))
    """)
    (root / "stage.py").write_text(stage)
    (root / "dvc.yaml").write_text(textwrap.dedent("""
        stages:
          prepare:
            cmd: python stage.py prepared.json
            deps: [stage.py]
            outs: [prepared.json]
          left:
            cmd: python stage.py prepared.json left.json
            deps: [stage.py, prepared.json]
            outs: [left.json]
          right:
            cmd: python stage.py prepared.json right.json
            deps: [stage.py, prepared.json]
            params: [alpha]
            outs: [right.json]
    """))
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"],
                    ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(command, cwd=root, check=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_repro_runs_a_dvc_pipeline_with_two_stages_at_once(tmp_path, monkeypatch):
    dvc_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{dvc_bin}:{__import__('os').environ['PATH']}")
    _dvc_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert repro([], jobs=2) == 0
    left, right = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("left", "right"))
    prepared = json.loads((tmp_path / "prepared.json").read_text())
    assert prepared[1] <= min(left[0], right[0])
    assert left[0] < right[1] and right[0] < left[1], "left and right did not overlap"
    # dvc.lock holds every stage, as a plain `dvc repro` writes it
    status = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True,
                            check=True)
    assert json.loads(status.stdout) == {}
    assert repro([], jobs=2) == 0  # nothing changed: every stage is skipped
    assert json.loads((tmp_path / "left.json").read_text()) == left
    # a target and its upstream only, as `dvc repro left --force`
    assert repro(["left"], jobs=2, force=True) == 0
    assert json.loads((tmp_path / "left.json").read_text())[0] > left[1]
    assert json.loads((tmp_path / "right.json").read_text()) == right


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_repro_with_a_param_change_saves_a_named_experiment(tmp_path, monkeypatch):
    """`maskopt repro -S alpha=0.05 -n NAME`: what `dvc exp run -S alpha=0.05 -n NAME`
    gives, with the stages side by side."""
    dvc_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{dvc_bin}:{__import__('os').environ['PATH']}")
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "t")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "t@example.com")
    _dvc_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MaskoptError, match="commit"):
        repro([], jobs=2, name="first")  # nothing to hang an experiment on yet
    assert repro([], jobs=2) == 0
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-qm", "baseline"], check=True)
    left, right = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("left", "right"))

    assert repro([], jobs=2, overrides=["alpha=0.05"], name="alpha-0p05") == 0

    assert "alpha: 0.05" in (tmp_path / "params.yaml").read_text()
    assert json.loads((tmp_path / "left.json").read_text()) == left  # it reads no alpha
    rerun = json.loads((tmp_path / "right.json").read_text())
    assert rerun[0] > right[1] and rerun[3] == "alpha-0p05"  # the name its MLflow runs get
    listed = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True,
                            check=True).stdout
    assert '"alpha-0p05"' in listed
    with pytest.raises(MaskoptError, match="exists"):
        repro([], jobs=2, overrides=["alpha=0.07"], name="alpha-0p05")
    assert "alpha: 0.05" in (tmp_path / "params.yaml").read_text()  # refused before any change


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_sees_each_running_stage_progress(tmp_path):
    script = ("import time\n"
              "print('seg:  40%|####      | 120/300 [00:40<01:00]', flush=True)\n"
              "time.sleep(1.5)\n")
    out = _Terminal()
    code = Scheduler({"segmenter": set()}, jobs=2, cores=2,
                     command=lambda stage: [sys.executable, "-c", script],
                     log_dir=tmp_path / "logs", out=out).run(status_every=0.2)
    assert code == 0
    assert "[0/1] segmenter 40% 120/300" in out.getvalue()


def test_set_params_changes_the_keys_as_dvc_exp_run_does_and_keeps_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text())

    params = set_params(path, ["alpha=0.05", "train.joint.steps=7", "finetune.pairs=[5,10]"])

    assert (params.alpha, params.train.joint.steps, params.finetune.pairs) == (0.05, 7, [5, 10])
    assert load_params(path) == params
    assert "# Mask expansion margin" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # no draft left


@pytest.mark.parametrize("override, fragment", [
    ("nope=1", "nope"),                       # not a key of params.yaml
    ("alpha=abc", "alpha"),                   # not a number
    ("train.joint.steps=-3", "train.joint.steps"),
    ("other.yaml:alpha=0.1", "other.yaml"),   # dvc's file prefix: only params.yaml here
    ("alpha", "alpha"),                       # no value
])
def test_set_params_refuses_bad_input_and_leaves_the_file_as_it_was(tmp_path, override,
                                                                    fragment):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text())

    with pytest.raises(MaskoptError, match=re.escape(fragment)):
        set_params(path, ["seed=3", override])

    assert path.read_text() == PARAMS.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
