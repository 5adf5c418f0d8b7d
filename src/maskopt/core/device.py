"""Where and in which precision the networks run: one device rule and one autocast
helper for training, evaluation and removal.

bfloat16 autocast is used where the hardware runs it fast: CUDA GPUs with bf16, and
CPUs with AVX-512 BF16 or AMX (checked at run time). Elsewhere bf16 is emulated and
slower than fp32, so ``auto`` stays in fp32 there.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from maskopt.core.errors import MaskoptError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cuda`` without CUDA is an error."""
    if preference not in DEVICES:
        raise MaskoptError(f"device must be one of {', '.join(DEVICES)} (got {preference!r})")
    if preference == "cuda" and not torch.cuda.is_available():
        raise MaskoptError("device cuda was asked for but no CUDA device is available")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX tiles: oneDNN then runs bf16 convolutions natively."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def bf16_pays(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def use_bf16(precision: str, device: torch.device) -> bool:
    """``auto``: bf16 where it pays; ``bf16``: always (slow where emulated); ``fp32``."""
    if precision not in PRECISIONS:
        raise MaskoptError(f"precision must be one of {', '.join(PRECISIONS)} "
                           f"(got {precision!r})")
    return precision == "bf16" or (precision == "auto" and bf16_pays(device))


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast (no loss scaler needed: bf16 has fp32's exponent range)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch (tensors, nested dicts and lists of them) on ``device``."""
    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value
    return move(batch)


def pin_threads(threads: int) -> None:
    """torch's CPU threads (0: its default). Another count rounds sums differently, so a
    stage that pins them gives the same numbers under `make pipeline` and `dvc exp run`."""
    if threads:
        torch.set_num_threads(threads)
