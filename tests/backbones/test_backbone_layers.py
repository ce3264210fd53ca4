"""Hooks on plain torch models: listing, layout inference, did-you-mean, capture and early stop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visae.backbones.base import Backbone, override_preprocess
from visae.backbones.layers import infer_layout, suggest
from visae.backbones.tokens import TokenLayout
from visae.data.transforms import Preprocess
from visae.errors import VisaeError


class Tripwire(nn.Module):
    """Counts its calls; the early-stop tests check it never runs."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)  # modifies the BN output in place
        self.shared = nn.Identity()  # called twice: not hookable
        self.block = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.GELU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.tail = Tripwire()
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.shared(self.act(self.bn(self.stem(x))))
        x = self.shared(self.block(x))
        return self.head(self.tail(self.pool(x).flatten(1)))


def tiny_backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone(spec="test:tiny", family="test", model=TinyCNN().eval(), preprocess=Preprocess(size=8))


def test_layers_lists_hookable_modules_in_forward_order_with_layouts():
    layers = {info.name: info for info in tiny_backbone().layers()}
    assert list(layers) == ["stem", "bn", "act", "block.0", "block.1", "block", "pool", "tail", "head"]
    assert layers["stem"].shape == (4, 4, 4) and layers["stem"].layout == TokenLayout("spatial", 4, (4, 4))
    assert layers["pool"].layout == TokenLayout("spatial", 6, (1, 1))
    assert layers["head"].layout == TokenLayout("pooled", 5, None)
    assert "shared" not in layers


def test_resolve_layer_explains_unknown_and_unhookable_names():
    bb = tiny_backbone()
    assert bb.resolve_layer("block.0") == "block.0"
    with pytest.raises(VisaeError, match=r"unknown layer 'blok.0'; did you mean 'block.0'"):
        bb.resolve_layer("blok.0")
    with pytest.raises(VisaeError, match="runs 2 times per forward"):
        bb.resolve_layer("shared")


def test_capture_returns_requested_outputs_and_stops_early():
    bb = tiny_backbone()
    bb.layers()  # the listing's dummy forward runs the whole model once
    bb.model.tail.calls = 0
    x_BCHW = torch.randn(3, 3, 8, 8)
    out = bb.capture(x_BCHW, ["block", "stem"])
    assert list(out) == ["block", "stem"]
    assert out["stem"].shape == (3, 4, 4, 4) and out["block"].shape == (3, 6, 4, 4)
    assert bb.model.tail.calls == 0, "the forward went on after the last requested layer"
    with torch.no_grad():
        expected = bb.model.block(bb.model.act(bb.model.bn(bb.model.stem(x_BCHW))))
    assert torch.allclose(out["block"], expected)
    bb.capture(x_BCHW, ["head"])
    assert bb.model.tail.calls == 1


def test_captured_outputs_are_not_changed_by_later_inplace_ops():
    bb = tiny_backbone()
    out = bb.capture(torch.randn(2, 3, 8, 8), ["bn", "act"])
    assert (out["bn"] < 0).any(), "the in-place ReLU overwrote the captured BatchNorm output"
    assert torch.equal(out["act"], out["bn"].clamp(min=0))


@pytest.mark.parametrize(
    "shape, prefix, grid, expected",
    [
        ((768,), (1, 0), (14, 14), TokenLayout("pooled", 768, None)),
        ((197, 768), (1, 0), (14, 14), TokenLayout("sequence", 768, (14, 14), n_cls=1)),
        ((196, 768), (1, 0), (14, 14), TokenLayout("sequence", 768, (14, 14))),  # before the CLS token is added
        ((261, 384), (1, 4), (16, 16), TokenLayout("sequence", 384, (16, 16), n_cls=1, n_registers=4)),
        ((1, 384), (0, 0), (16, 16), TokenLayout("sequence", 384, None)),  # a pooling head's query
        ((198, 768), None, (14, 14), TokenLayout("sequence", 768, (14, 14), n_cls=2)),  # undeclared: counted
        ((50, 64), (1, 0), None, TokenLayout("sequence", 64, (7, 7), n_cls=1)),  # grid from a square count
        ((96, 56, 56), (0, 0), None, TokenLayout("spatial", 96, (56, 56))),
        ((56, 56, 96), (0, 0), None, TokenLayout("spatial", 96, (56, 56), channels_last=True)),
        ((2, 3, 4, 5), (0, 0), None, None),
    ],
)
def test_infer_layout(shape, prefix, grid, expected):
    assert infer_layout(shape, prefix=prefix, patch_grid=grid) == expected


def test_suggest_prefers_a_full_name_ending_with_the_query_then_similar_tails():
    names = ["encoder", "encoder.stages.0", "encoder.stages.3", "encoder.stages.3.layers.0", "layernorm"]
    assert suggest("stages.3", names) == "did you mean 'encoder.stages.3'?"
    assert suggest("stage.3", names).startswith("did you mean 'encoder.stages.3'")
    assert suggest("zzz", names) == ""


def test_preprocess_overrides_are_validated():
    pp = Preprocess()
    assert override_preprocess(pp, {"size": 256}).size == 256
    with pytest.raises(VisaeError, match="unknown preprocessing field"):
        override_preprocess(pp, {"sise": 256})
    with pytest.raises(VisaeError, match="bad preprocessing value for 'resample'"):
        override_preprocess(pp, {"resample": "lanczos"})
