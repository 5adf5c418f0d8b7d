"""Resumable training state: weights, optimizers, step and RNG, written atomically.

A checkpoint carries a fingerprint of everything that determines the run (params
the stage reads, upstream model files); a restarted stage resumes only from a
checkpoint with the same fingerprint, so changing alpha never continues an old run.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from maskopt.core.errors import MaskoptError
from maskopt.core.io import atomic_path


def fingerprint(config: dict, files: list[str | Path] = ()) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def rng_state() -> dict:
    """All RNG states as tensors and plain values, so the file loads with weights_only."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, step: int, fingerprint: str, modules: dict,
                    optimizers: dict, extra: dict | None = None) -> None:
    state = {"step": step, "fingerprint": fingerprint, "rng": rng_state(),
             "modules": {k: m.state_dict() for k, m in modules.items()},
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "extra": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, fingerprint: str) -> dict | None:
    """The saved state if ``path`` holds a checkpoint of this very run, else None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise MaskoptError(f"{path}: unreadable checkpoint ({exc}); delete it to start over") \
            from exc
    return state if state.get("fingerprint") == fingerprint else None


def restore_training(state: dict, modules: dict, optimizers: dict, source: str) -> int:
    from maskopt.models.build import load_state

    for key, module in modules.items():
        load_state(module, state["modules"][key], f"{source} [{key}]")
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][key])
    set_rng_state(state["rng"])
    return int(state["step"])
