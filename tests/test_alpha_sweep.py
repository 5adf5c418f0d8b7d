"""scripts/alpha_sweep.py queues its experiments and runs the queue several at a time."""

import importlib.util
import os
import stat
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sweep_module():
    spec = importlib.util.spec_from_file_location("alpha_sweep", ROOT / "scripts/alpha_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stand_in_dvc(tmp_path, monkeypatch, fail_after_start: str = "") -> Path:
    """A `dvc` on PATH that records each call and the threads it was given. Its queue
    table holds an old failure, and after `queue start` a new one if asked."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "dvc"
    fake.parent.mkdir()
    new_failure = (f'  grep -q "^queue start" "{calls}" && '
                   f'echo "abc1234  {fail_after_start}  07:36 PM   Failed"\n'
                   if fail_after_start else "")
    fake.write_text(f'''#!/bin/sh
echo "$* | threads=$OMP_NUM_THREADS" >> "{calls}"
if [ "$1 $2" = "queue status" ]; then
  echo "Task     Name        Created    Status"
  echo "0ld0000  seed-1      07:00 PM   Failed"
{new_failure}fi
exit 0
''')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("alpha: 0.03\n")
    return calls


def test_the_sweep_queues_each_new_alpha_and_starts_jobs_workers_with_a_thread_share(
        tmp_path, monkeypatch):
    calls = _stand_in_dvc(tmp_path, monkeypatch)

    _sweep_module().run_sweep([0.01, 0.03, 0.05], [1], jobs=2, cores=4)

    lines = calls.read_text().splitlines()
    queued = [line for line in lines if line.startswith("exp run --queue")]
    assert len(queued) == 3  # α 0.01 and 0.05 (0.03 is the workspace's run) and seed 1
    assert any("alpha=0.01" in line and "-n alpha-0p01" in line for line in queued)
    assert not any("alpha=0.03" in line for line in queued)
    assert any("seed=1" in line for line in queued)
    started = [line for line in lines if line.startswith("queue start")]
    assert started == ["queue start --jobs 2 | threads=2"]  # 4 cores, 2 experiments
    assert lines.index(started[0]) > max(lines.index(line) for line in queued)
    assert lines[-1].startswith("queue status")


def test_the_sweep_names_the_experiments_that_failed_in_this_run_only(tmp_path, monkeypatch):
    _stand_in_dvc(tmp_path, monkeypatch, fail_after_start="alpha-0p05")

    with pytest.raises(SystemExit) as stop:
        _sweep_module().run_sweep([0.05], [1], jobs=1, cores=2)

    assert "alpha-0p05" in str(stop.value)
    assert "seed-1" not in str(stop.value)  # its failure is an older task's
