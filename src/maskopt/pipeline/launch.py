"""Start a stage script on the CPU kernels its params ask for (``train.cpu_kernels``).

PyTorch, oneDNN and MKL choose their vector kernels from the CPU they start on, and
an AVX-512 kernel adds in another order than an AVX2 one: the same fp32 training,
same code and params, ends in other weights on a CPU with AVX-512 than on one
without. With ``avx2`` every x86-64 CPU that has AVX2 runs the same kernels, so a
user's run gives the committed results bit for bit; ``native`` lets each library
pick the fastest. The three libraries read their documented variables once, before
the first operation: they must be in the environment when the stage's Python
starts, hence this launcher (dvc.yaml runs every stage through it).

    python -m maskopt.pipeline.launch stages/train_joint.py [args]
"""

from __future__ import annotations

import os
import sys

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.params import load_params

KERNELS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "native": {},
}


def stage_environment(kernels: str, environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with the variables of ``kernels`` set (``native``: removed, so that
    a shell's own setting cannot pin a run the params say is free)."""
    env = {k: v for k, v in environ.items() if k not in KERNELS["avx2"]}
    return {**env, **KERNELS[kernels]}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m maskopt.pipeline.launch SCRIPT [ARGS...]")
    try:
        kernels = load_params("params.yaml").train.cpu_kernels
    except MaskoptError as exc:
        raise SystemExit(f"error: {exc}") from None
    env = stage_environment(kernels, dict(os.environ))
    os.execve(sys.executable, [sys.executable, *argv], env)


if __name__ == "__main__":
    main(sys.argv[1:])
