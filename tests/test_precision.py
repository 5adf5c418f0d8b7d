"""bf16 autocast where the hardware runs it fast, fp32 elsewhere (maskopt.precision)."""

import pytest
import torch

from maskopt import precision
from maskopt.training.distributed import Context
from maskopt.training.loop import autocast


def _conv_dtype(ctx: Context, amp: bool) -> torch.dtype:
    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast(ctx, amp):
        return conv(torch.rand(1, 3, 8, 8)).dtype


@pytest.mark.parametrize("fast", [True, False])
def test_training_amp_uses_bf16_on_a_cpu_only_where_it_is_fast(monkeypatch, fast):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    ctx = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert _conv_dtype(ctx, amp=True) == (torch.bfloat16 if fast else torch.float32)
    assert _conv_dtype(ctx, amp=False) == torch.float32


def test_precision_choices(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert not precision.use_bf16("auto", cpu) and precision.use_bf16("bf16", cpu)
    assert not precision.use_bf16("fp32", cpu)
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.use_bf16("fp16", cpu)
