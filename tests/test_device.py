"""One device rule and one bf16 rule for training, evaluation and removal (maskopt.core.device)."""

import pytest
import torch
from tiny import tiny_params

from maskopt.core import device
from maskopt.core.errors import MaskoptError
from maskopt.training.distributed import Context
from maskopt.training.tasks import training_bf16


def _conv_dtype(bf16: bool) -> torch.dtype:
    conv = torch.nn.Conv2d(3, 4, 3)
    with device.autocast(torch.device("cpu"), bf16):
        return conv(torch.rand(1, 3, 8, 8)).dtype


@pytest.mark.parametrize("fast", [True, False])
def test_training_amp_uses_bf16_on_a_cpu_only_where_it_is_fast(monkeypatch, fast):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: fast)
    ctx = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    amp = training_bf16(tiny_params(**{"train.amp": True}), ctx)
    assert _conv_dtype(amp) == (torch.bfloat16 if fast else torch.float32)
    assert not training_bf16(tiny_params(**{"train.amp": False}), ctx)


def test_precision_choices(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert not device.use_bf16("auto", cpu) and device.use_bf16("bf16", cpu)
    assert not device.use_bf16("fp32", cpu)
    with pytest.raises(MaskoptError, match="precision must be one of"):
        device.use_bf16("fp16", cpu)


def test_device_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.pick_device("auto") == torch.device("cpu")
    assert device.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(MaskoptError, match="no CUDA device"):
        device.pick_device("cuda")
    with pytest.raises(MaskoptError, match="device must be one of"):
        device.pick_device("gpu")
