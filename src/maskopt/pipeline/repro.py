"""`dvc repro`, with stages that do not depend on each other run side by side.

DVC runs one stage at a time, yet it is built to let several `dvc repro` processes
share a workspace: the repository lock is released while a stage's command runs
(``--wait-for-lock`` makes the next process wait for it instead of failing) and each
stage's dependencies and outputs hold read/write locks of their own. This module asks
DVC for the stage graph (``dvc dag --dot``) and runs each stage with ``dvc repro
--single-item`` as soon as all stages upstream of it are done, at most ``jobs`` at a
time; of the stages ready, the one heading the longest chain of work downstream starts
first, by the seconds each stage declares in dvc.yaml (``meta: {cost: N}``). DVC still
decides whether a stage changed, restores from its run cache and writes dvc.lock, so
the result is what a plain `dvc repro` writes.

Why: on a small CPU a stage's torch ops at the sample's 64 px gain little from a
second thread, while two one-thread stages side by side nearly double the work done
(benchmarks/README.md). Each stage gets ``cores // jobs`` threads, or all cores
when nothing can run beside it. A stage's output goes to ``logs/repro/<stage>.log``;
the console gets a line per stage started and finished and, on a terminal, a status
line with each running stage's progress bar. With ``-S KEY=VALUE`` and ``-n NAME`` it
runs an experiment as `dvc exp run -S KEY=VALUE -n NAME` does, stages side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.params import Params, load_params

LOG_DIR = Path("logs/repro")
PARAMS_FILE = Path("params.yaml")
DVC_YAML = Path("dvc.yaml")
_NODE = re.compile(r'^\s*"([^"]+)";\s*$')
_EDGE = re.compile(r'^\s*"([^"]+)"\s*->\s*"([^"]+)";\s*$')
_BAR = re.compile(r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")


def parse_dag(dot: str) -> dict[str, set[str]]:
    """Each stage of ``dvc dag --dot``'s output with the stages it directly depends on."""
    upstream: dict[str, set[str]] = {}
    for line in dot.splitlines():
        if edge := _EDGE.match(line):
            before, after = edge.groups()
            upstream.setdefault(before, set())
            upstream.setdefault(after, set()).add(before)
        elif node := _NODE.match(line):
            upstream.setdefault(node.group(1), set())
    if not upstream:
        raise MaskoptError("`dvc dag --dot` listed no stages; is this a DVC project?")
    return upstream


def priorities(upstream: dict[str, set[str]], cost: dict[str, float] | None = None
               ) -> dict[str, float]:
    """Each stage's longest chain downstream, itself included, summing the stages'
    ``cost`` (1 each where none is given): starting the longest chains first keeps the
    last stages from waiting on one long lane."""
    downstream: dict[str, set[str]] = {stage: set() for stage in upstream}
    for stage, befores in upstream.items():
        for before in befores:
            downstream[before].add(stage)
    weight = {stage: (cost or {}).get(stage, 1) for stage in upstream}
    memo: dict[str, float] = {}

    def chain(stage: str) -> float:
        if stage not in memo:
            memo[stage] = weight[stage] + max((chain(after) for after in downstream[stage]),
                                              default=0)
        return memo[stage]

    return {stage: chain(stage) for stage in upstream}


def stage_costs(dvc_yaml: Path, stages: list[str]) -> dict[str, float]:
    """The ``meta: {cost: N}`` of each stage in dvc.yaml (a foreach stage's ``do:`` gives
    every ``NAME@KEY``): its seconds in the sample's run on two cores, an order hint for
    :func:`priorities`. DVC itself ignores ``meta``."""
    import yaml

    declared = yaml.safe_load(dvc_yaml.read_text()).get("stages", {}) if dvc_yaml.exists() \
        else {}
    costs = {}
    for stage in stages:
        meta = declared.get(stage.split("@")[0], {})
        meta = (meta.get("do", meta) or {}).get("meta") or {}
        if isinstance(meta.get("cost"), int | float):
            costs[stage] = meta["cost"]
    return costs


def progress(log_tail: str) -> str | None:
    """``"135/300"``-style progress of the last tqdm bar in a stage's log, if any."""
    found = _BAR.findall(log_tail)
    if not found:
        return None
    percent, done, total = found[-1]
    return f"{percent}% {done}/{total}"


@dataclass
class _Running:
    process: subprocess.Popen
    log: Path
    threads: int
    started: float = field(default_factory=time.monotonic)


class Scheduler:
    """Runs the stages of ``upstream`` (stage -> stages it depends on) in dependency
    order, at most ``jobs`` at a time, each through ``command(stage)``."""

    def __init__(self, upstream: dict[str, set[str]], jobs: int, cores: int, command,
                 log_dir: Path = LOG_DIR, out=sys.stdout, env: dict | None = None,
                 cost: dict[str, float] | None = None):
        if jobs < 1:
            raise MaskoptError(f"--jobs must be at least 1, got {jobs}")
        self.upstream, self.jobs, self.cores = upstream, jobs, max(1, cores)
        self.command, self.log_dir, self.out = command, log_dir, out
        self.env = dict(os.environ if env is None else env)
        self.live = getattr(out, "isatty", lambda: False)()  # a terminal: status lines
        self.rank = priorities(upstream, cost)
        self.order = {stage: i for i, stage in enumerate(upstream)}  # dvc.yaml's order
        self.done: set[str] = set()
        self.failed: list[str] = []
        self.running: dict[str, _Running] = {}
        self.began = time.monotonic()

    def ready(self) -> list[str]:
        waiting = [s for s in self.upstream
                   if s not in self.done and s not in self.running
                   and self.upstream[s] <= self.done]
        return sorted(waiting, key=lambda s: (-self.rank[s], self.order[s]))

    def threads_for(self, ready: int) -> int:
        """All cores when nothing else can run beside the stage, else a share."""
        side_by_side = min(self.jobs, len(self.running) + ready)
        return max(1, self.cores // max(1, side_by_side))

    def start(self, stage: str, threads: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{stage.replace('@', '_')}.log"
        env = {**self.env, **thread_env(threads)}
        with log.open("wb") as sink:  # the child keeps its own handle
            process = subprocess.Popen(self.command(stage), stdout=sink,
                                       stderr=subprocess.STDOUT, env=env)
        self.running[stage] = _Running(process, log, threads)
        self._say(f"start  {stage} ({threads} thread{'s' * (threads > 1)}; log {log})")

    def poll(self) -> None:
        for stage, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.running[stage]
            seconds = time.monotonic() - run.started
            if code == 0:
                self.done.add(stage)
                self._say(f"done   {stage} in {seconds:.0f} s "
                          f"[{len(self.done)}/{len(self.upstream)}]")
            else:
                self.failed.append(stage)
                self._say(f"FAILED {stage} (exit {code}) after {seconds:.0f} s; "
                          f"the end of {run.log}:\n{_tail(run.log, 3000)}")

    def run(self, status_every: float = 2.0) -> int:
        """Run everything (or until a stage fails; stages already running then finish,
        so their work is kept). Returns 0 when every stage succeeded, else 1."""
        last_status = 0.0
        try:
            while True:
                self.poll()
                if not self.failed:
                    ready = self.ready()
                    while ready and len(self.running) < self.jobs:
                        stage = ready.pop(0)
                        self.start(stage, self.threads_for(len(ready) + 1))
                if not self.running:
                    break
                if self.live and time.monotonic() - last_status >= status_every:
                    self._status()
                    last_status = time.monotonic()
                time.sleep(0.2)
        except KeyboardInterrupt:
            # the children got the same Ctrl-C; DVC keeps what each stage committed
            for run in self.running.values():
                run.process.wait()
            raise
        if self.live:
            self.out.write("\r\x1b[K")
        left = [s for s in self.upstream if s not in self.done]
        if self.failed:
            self._say(f"stopped: {', '.join(self.failed)} failed; not run: "
                      f"{', '.join(s for s in left if s not in self.failed) or 'none'}")
            return 1
        self._say(f"all {len(self.done)} stages done in {time.monotonic() - self.began:.0f} s")
        return 0

    def _status(self) -> None:
        parts = [f"{stage} {progress(_tail(run.log, 4000)) or '…'}"
                 for stage, run in self.running.items()]
        line = f"[{len(self.done)}/{len(self.upstream)}] " + " | ".join(parts)
        width = shutil.get_terminal_size().columns - 1
        self.out.write("\r\x1b[K" + line[:width])
        self.out.flush()

    def _say(self, text: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.began), 60)
        clear = "\r\x1b[K" if self.live else ""  # over the status line
        self.out.write(f"{clear}[{minutes:02d}:{seconds:02d}] {text}\n")
        self.out.flush()


def _tail(path: Path, size: int) -> str:
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - size))
        text = log.read().decode(errors="replace")
    # tqdm redraws with carriage returns: keep each line's last drawing
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _dvc() -> str:
    """The dvc beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    found = str(beside) if beside.exists() else shutil.which("dvc")
    if not found:
        raise MaskoptError("dvc not found; run `make setup` (it installs dvc into .venv)")
    return found


def stage_graph(dvc: str, targets: list[str]) -> dict[str, set[str]]:
    """The stages `dvc repro TARGETS` would consider, with their dependencies."""
    done = subprocess.run([dvc, "dag", "--dot", *targets], capture_output=True, text=True)
    if done.returncode != 0:
        raise MaskoptError(f"`dvc dag --dot` failed: {done.stderr.strip()}")
    return parse_dag(done.stdout)


def default_jobs(cores: int) -> int:
    """Two stages at a time on a CPU with two cores or more; one with a GPU, which the
    stages would otherwise share (and at the paper's scale each needs all of it)."""
    import torch

    return 1 if torch.cuda.is_available() else min(2, cores)


def jobs_and_cores(jobs: int | None, cores: int | None) -> tuple[int, int]:
    """``jobs`` and ``cores`` as given, else the defaults: every core this process may
    use, and :func:`default_jobs` for them."""
    cores = cores or available_cores()
    return (default_jobs(cores) if jobs is None else jobs), cores


def repro(targets: list[str], jobs: int | None = None, cores: int | None = None,
          force: bool = False, overrides: list[str] | None = None,
          name: str | None = None, replace: bool = False) -> int:
    """Run the pipeline (or ``targets`` and their upstream). ``overrides`` (KEY=VALUE)
    change params.yaml first, as `dvc exp run -S` does; ``name`` names the MLflow parent
    run and, once every stage is done, saves the workspace as DVC experiment ``name``
    (`dvc exp save`), so that `dvc exp show` lists it as if `dvc exp run -n` ran it;
    ``replace`` lets it replace an experiment of that name (the machine's baseline)."""
    dvc = _dvc()
    if name and replace and not _has_commit():  # a baseline is optional: not in git, none
        print("not a git checkout with a commit: the run is not saved as experiment "
              f"{name}", flush=True)
        name = None
    if name:
        _check_new_experiment(name, replace)
    if overrides:
        set_params(PARAMS_FILE, overrides)
    upstream = stage_graph(dvc, targets)
    jobs, cores = jobs_and_cores(jobs, cores)
    flags = ["--force"] if force else []
    # stages run `python stages/...`: the interpreter beside dvc, as `make pipeline` has it
    env = {**os.environ, "PATH": f"{Path(dvc).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if name:
        env["DVC_EXP_NAME"] = name  # what `dvc exp run` gives its stages (pipeline.tracking)

    def command(stage: str) -> list[str]:
        return [dvc, "--wait-for-lock", "repro", "--single-item", *flags, stage]

    failed = Scheduler(upstream, jobs, cores, command, env=env,
                       cost=stage_costs(DVC_YAML, list(upstream))).run()
    if failed or not name:
        return failed
    print(f"saving the workspace as experiment {name} (dvc exp save)", flush=True)
    saved = subprocess.run([dvc, "exp", "save", "-n", name, *(["--force"] if replace else [])
                            ]).returncode
    notice = precision_notice(name)
    if notice:
        print(notice, flush=True)
    return saved


def precision_notice(name: str) -> str | None:
    """One line when the committed results were trained in another precision than this
    run (a bf16 CPU against an fp32 one moves every number): compare with ``name``."""
    report = "reports/train/train_joint.json"
    here = Path(report)
    committed = subprocess.run(["git", "show", f"HEAD:{report}"], capture_output=True,
                               text=True)
    if not here.exists() or committed.returncode:
        return None
    ours = json.loads(here.read_text()).get("precision")
    theirs = json.loads(committed.stdout).get("precision", "an unrecorded precision")
    if ours == theirs:
        return None
    return (f"note: the committed results were trained in {theirs}, this run in {ours}: "
            f"every number differs by that alone. Compare experiments with `{name}`, "
            f"made here (`dvc exp diff {name}`, `maskopt compare {name}`), not with "
            "`dvc metrics diff` against the commit.")


def _has_commit() -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"],
                          capture_output=True).returncode == 0


def _check_new_experiment(name: str, replace: bool = False) -> None:
    """Fail before hours of training, not at `dvc exp save`: it needs a commit to hang
    the experiment on and a name no experiment has (unless it may be replaced)."""
    if not _has_commit():
        raise MaskoptError("--name needs a git commit to save the experiment on; commit first")
    refs = subprocess.run(["git", "for-each-ref", "refs/exps", "--format=%(refname)"],
                          capture_output=True, text=True).stdout.split()
    if not replace and any(ref.rsplit("/", 1)[-1] == name for ref in refs):
        raise MaskoptError(f"experiment {name!r} exists: pick another name, or remove it "
                           f"with `dvc exp remove {name}`")


def set_params(path: str | Path, overrides: list[str]) -> Params:
    """Change ``path`` as `dvc exp run -S KEY=VALUE` does (DVC's own code: Hydra's
    override grammar, the file's comments kept), but only if the result is valid
    params: else raise MaskoptError and leave the file as it was."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    path = Path(path)
    load_params(path)  # the file as it is must be readable first
    for override in overrides:
        if ":" in override.split("=", 1)[0]:
            raise MaskoptError(f"{override!r}: only {path.name} can be set here")
    draft = path.with_name(f".{path.stem}.draft{path.suffix}")  # DVC picks YAML by suffix
    try:
        draft.write_text(path.read_text())
        try:
            apply_overrides(draft, overrides)
        except InvalidArgumentError as exc:
            cause = exc.__cause__ or exc
            raise MaskoptError(f"{path}: cannot set {' '.join(overrides)}: "
                               f"{str(cause).splitlines()[0]}") from exc
        try:
            params = load_params(draft)
        except MaskoptError as exc:
            raise MaskoptError(str(exc).replace(str(draft), f"{path} with {' '.join(overrides)}")
                               ) from exc
        draft.replace(path)
        return params
    finally:
        draft.unlink(missing_ok=True)


def thread_env(threads: int) -> dict[str, str]:
    """The variables that set torch's CPU threads in a process about to start."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
