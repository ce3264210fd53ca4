"""Checkpoint files: by key, wrapped, or by position only when asked for; misfits refused."""

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
    assert load_checkpoint(dst, tmp_path / "w.pth", "test").how == "key"
    assert same(src, dst)


def test_renamed_tensors_load_by_position_only_when_asked(tmp_path):
    src = trained()
    torch.save(renamed(src.state_dict()), tmp_path / "w.pth")
    dst = target()
    with pytest.raises(VisaeError, match=r"0 of 8 tensors match by name, the other 8 would be matched by position; .*--allow-position-match"):
        load_checkpoint(dst, tmp_path / "w.pth", "test")
    assert not same(src, dst)  # nothing loaded
    match = load_checkpoint(dst, tmp_path / "w.pth", "test", allow_position=True)
    assert (match.how, match.n_by_position, match.fits) == ("position", 8, None)
    assert same(src, dst)
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(src(x), dst(x))


def test_the_refusal_names_a_candidate_architecture_that_takes_the_checkpoint_by_name(tmp_path):
    torch.save(renamed(trained().state_dict()), tmp_path / "w.pth")
    named = nn.Sequential(OrderedDict(_conv_stem=nn.Conv2d(3, 4, 3), _bn0=nn.BatchNorm2d(4), _conv_head=nn.Conv2d(4, 4, 1)))
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))  # positional names: not a fit
    built = []

    def alternatives():
        for spec, model in (("fake:other", other), ("fake:named", named), ("fake:never", None)):
            built.append(spec)
            yield spec, model

    with pytest.raises(VisaeError, match=r"fake:named takes it by name; load it as fake:named:.*w\.pth, or pass --allow-position-match"):
        load_checkpoint(target(), tmp_path / "w.pth", "test", alternatives=alternatives)
    assert built == ["fake:other", "fake:named"]  # candidates are built lazily and the search stops at the first fit
    assert load_checkpoint(target(), tmp_path / "w.pth", "test", allow_position=True, alternatives=alternatives).fits == "fake:named"


def test_safetensors_load_by_key_only(tmp_path):
    src = trained()
    save_file(dict(src.state_dict()), str(tmp_path / "same.safetensors"))
    dst = target()
    assert load_checkpoint(dst, tmp_path / "same.safetensors", "test").how == "key" and same(src, dst)
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
