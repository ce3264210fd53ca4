"""Checkpoint files: by key, wrapped, or by position when only the names differ; misfits refused."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from visae.backbones.weights import load_checkpoint, read_state_dict
from visae.errors import VisaeError


def trained() -> nn.Module:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)).eval()
    m[1].running_mean.uniform_(-1, 1)
    m[1].running_var.uniform_(0.5, 2)
    return m


def target() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)).eval()


def renamed(sd: dict) -> OrderedDict:
    """Same tensors, same order, another code base's names."""
    names = {"0": "_conv_stem", "1": "_bn0", "2": "_conv_head"}
    return OrderedDict((names[k.split(".")[0]] + "." + k.split(".", 1)[1], v) for k, v in sd.items())


def same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_keys_load_by_key_even_when_wrapped(tmp_path):
    src = trained()
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, tmp_path / "w.pth")
    dst = target()
    assert load_checkpoint(dst, tmp_path / "w.pth", "test") == "key"
    assert same(src, dst)


def test_renamed_tensors_in_the_same_order_load_by_position(tmp_path):
    src = trained()
    torch.save(renamed(src.state_dict()), tmp_path / "w.pth")
    dst = target()
    assert load_checkpoint(dst, tmp_path / "w.pth", "test") == "position"
    assert same(src, dst)
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(src(x), dst(x))


def test_safetensors_load_by_key_only(tmp_path):
    src = trained()
    save_file(dict(src.state_dict()), str(tmp_path / "same.safetensors"))
    dst = target()
    assert load_checkpoint(dst, tmp_path / "same.safetensors", "test") == "key" and same(src, dst)
    save_file(dict(renamed(src.state_dict())), str(tmp_path / "renamed.safetensors"))
    with pytest.raises(VisaeError, match="does not keep the tensors' order"):
        load_checkpoint(target(), tmp_path / "renamed.safetensors", "test")


def test_misaligned_or_misshapen_checkpoints_are_refused(tmp_path):
    sd = renamed(trained().state_dict())
    keys = list(sd)
    keys[2], keys[3] = keys[3], keys[2]  # _bn0.weight <-> _bn0.bias: same shape, different kind
    torch.save(OrderedDict((k, sd[k]) for k in keys), tmp_path / "swapped.pth")
    with pytest.raises(VisaeError, match=r"tensor 2 '_bn0.bias' \(4,\) does not line up with '1.weight'"):
        load_checkpoint(target(), tmp_path / "swapped.pth", "test")
    wide = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(VisaeError, match=r"'0.weight' is \(8, 3, 3, 3\), the model wants \(4, 3, 3, 3\)"):
        load_checkpoint(target(), tmp_path / "wide.pth", "test")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(VisaeError, match="holds no state dict"):
        read_state_dict(tmp_path / "empty.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(VisaeError, match="cannot read checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
