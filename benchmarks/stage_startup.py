"""What a pipeline stage's process costs before its first step: importing what the
training stages import (torch, torchvision, mlflow, maskopt), with and without the
venv's compiled bytecode.

`make setup` installs with ``uv pip install --compile-bytecode``, which writes every
package's .pyc once. Without them, Python compiles each imported module from source in
every new process, and where it may not write the result (PYTHONDONTWRITEBYTECODE=1,
as on the machines this project is built on, or a read-only venv) it does so again in
the next one: once per DVC stage. This times, in alternating rounds, a fresh process
importing ``maskopt.training.stages`` (a) as installed and (b) with Python pointed at an
empty bytecode cache it may not write to (``PYTHONPYCACHEPREFIX`` + ``-B``), i.e. as an
install without compiled bytecode runs. Run it on an idle machine.

    .venv/bin/python benchmarks/stage_startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT = "import maskopt.training.stages, maskopt.evaluation.run"


def timed_import(env: dict[str, str], extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *extra, "-c", IMPORT], env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch  # only to find where it is installed

    cache = Path(torch.__file__).parent / "__pycache__"
    print(f"torch's bytecode in the venv: {'present' if cache.is_dir() else 'absent'} "
          f"({cache}); load average {os.getloadavg()[0]:.2f}")
    installed, uncompiled = [], []
    with tempfile.TemporaryDirectory() as empty:
        plain = dict(os.environ)
        no_cache = {**plain, "PYTHONPYCACHEPREFIX": empty}
        for _ in range(args.rounds):
            installed.append(timed_import(plain, []))
            uncompiled.append(timed_import(no_cache, ["-B"]))
    a, b = statistics.median(installed), statistics.median(uncompiled)
    print(f"stage imports, median of {args.rounds}: as installed {a:.1f} s, without "
          f"bytecode {b:.1f} s ({b / a:.1f}x); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
