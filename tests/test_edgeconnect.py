"""EdgeConnect's published checkpoints load whole into maskopt's EdgeConnect."""

import pytest
import torch

from maskopt.core.errors import MaskoptError
from maskopt.models.edgeconnect import EdgeConnect, load_edgeconnect


def edgeconnect_keys(spectral_norm: bool) -> list[str]:
    """A generator's state-dict keys as EdgeConnect's src/networks.py names them:
    encoder convs at 1, 4, 7; residual blocks' ``conv_block`` convs at 1 and 5 (no
    bias under spectral norm); decoder transposed convs at 0, 3 and the last conv at 7,
    never spectral-normed."""
    def conv(prefix: str, normed: bool, bias: bool = True) -> list[str]:
        weights = ["weight_orig", "weight_u", "weight_v"] if normed else ["weight"]
        return [f"{prefix}.{w}" for w in (["bias"] if bias else []) + weights]

    keys = [k for i in (1, 4, 7) for k in conv(f"encoder.{i}", spectral_norm)]
    keys += [k for b in range(8) for i in (1, 5)
             for k in conv(f"middle.{b}.conv_block.{i}", spectral_norm, not spectral_norm)]
    keys += [k for i in (0, 3) for k in conv(f"decoder.{i}", spectral_norm)]
    return keys + conv("decoder.7", False)


def write_checkpoints(folder, seed: int = 0) -> dict[str, dict]:
    """Random generators in EdgeConnect's files: {'iteration', 'generator': state}."""
    generator = torch.Generator().manual_seed(seed)
    reference = EdgeConnect()
    written = {}
    for part, name, normed in (("edge", "EdgeModel_gen.pth", True),
                               ("inpaint", "InpaintingModel_gen.pth", False)):
        shapes = {k.replace(".body.", ".conv_block."): v.shape
                  for k, v in getattr(reference, part).state_dict().items()}
        keys = edgeconnect_keys(normed)
        assert sorted(keys) == sorted(shapes)  # the layout is EdgeConnect's, key for key
        state = {k: torch.randn(shapes[k], generator=generator) * 0.05 for k in keys}
        torch.save({"iteration": 2000000, "generator": state}, folder / name)
        written[part] = state
    return written


def test_edgeconnect_checkpoints_load_completely_and_fill_only_the_hole(tmp_path):
    written = write_checkpoints(tmp_path)
    model = load_edgeconnect(tmp_path)
    for part, state in written.items():
        own = getattr(model, part).state_dict()
        for key, value in state.items():
            assert torch.equal(own[key.replace(".conv_block.", ".body.")], value), key
    images = torch.rand(2, 3, 64, 64)
    masks = torch.zeros(2, 1, 64, 64)
    masks[:, :, 20:40, 16:36] = 1
    filled = model(images, masks)
    assert torch.equal(filled * (1 - masks), images * (1 - masks))
    assert not torch.allclose(filled * masks, images * masks)
    assert 0 <= float(filled.min()) and float(filled.max()) <= 1


def test_a_missing_or_foreign_edgeconnect_file_is_named_and_nothing_loads(tmp_path):
    with pytest.raises(MaskoptError, match="EdgeModel_gen.pth: EdgeConnect checkpoint missing"):
        load_edgeconnect(tmp_path)
    write_checkpoints(tmp_path)
    torch.save({"generator": {"encoder.1.weight": torch.zeros(1)}},
               tmp_path / "InpaintingModel_gen.pth")
    with pytest.raises(MaskoptError, match=r"InpaintingModel_gen.pth: does not fit .*missing"):
        load_edgeconnect(tmp_path)
    torch.save({"state": {}}, tmp_path / "InpaintingModel_gen.pth")
    with pytest.raises(MaskoptError, match="not an EdgeConnect generator checkpoint"):
        load_edgeconnect(tmp_path)
