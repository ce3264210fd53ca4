"""to_tokens: every layout flattens into tokens that map back exactly to where they came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.backbones.tokens import CLS, PATCH, POOLED, REGISTER, TokenLayout, to_tokens, tokens_per_image
from visae.errors import VisaeError

small = st.integers(1, 5)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), c=small, h=small, w=small)
def test_spatial_tokens_reshape_back_to_the_map(b, c, h, w):
    fmap_BCHW = torch.randn(b, c, h, w)
    layout = TokenLayout("spatial", c, (h, w))
    tokens_TD, index = to_tokens(fmap_BCHW, layout)
    assert tokens_TD.shape == (b * h * w, c) and len(index) == b * h * w
    assert torch.equal(tokens_TD.reshape(b, h, w, c).permute(0, 3, 1, 2), fmap_BCHW)
    # every token is the map cell its index names
    img, y, x = (torch.as_tensor(a, dtype=torch.long) for a in (index.image, index.y, index.x))
    assert torch.equal(tokens_TD, fmap_BCHW[img, :, y, x])
    assert (index.kind == PATCH).all()
    assert tokens_per_image(layout) == h * w


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 3), c=small, h=small, w=small)
def test_channels_last_map_gives_the_same_tokens(b, c, h, w):
    fmap_BCHW = torch.randn(b, c, h, w)
    first, i1 = to_tokens(fmap_BCHW, TokenLayout("spatial", c, (h, w)))
    last, i2 = to_tokens(fmap_BCHW.permute(0, 2, 3, 1).contiguous(), TokenLayout("spatial", c, (h, w), channels_last=True))
    assert torch.equal(first, last)
    assert all(np.array_equal(getattr(i1, f), getattr(i2, f)) for f in ("image", "kind", "y", "x"))


@settings(max_examples=50, deadline=None)
@given(b=st.integers(1, 3), d=small, h=small, w=small, n_cls=st.integers(0, 2), n_reg=st.integers(0, 4))
def test_sequence_selection_counts_and_positions(b, d, h, w, n_cls, n_reg):
    layout = TokenLayout("sequence", d, (h, w), n_cls=n_cls, n_registers=n_reg)
    n = n_cls + n_reg + h * w
    seq_BND = torch.randn(b, n, d)
    counts = {"patch": h * w, "cls": n_cls, "registers": n_reg, "all": n}
    kinds = {"patch": PATCH, "cls": CLS, "registers": REGISTER}
    for select, count in counts.items():
        if count == 0:
            with pytest.raises(VisaeError):
                to_tokens(seq_BND, layout, select)
            continue
        tokens_TD, index = to_tokens(seq_BND, layout, select)
        assert tokens_TD.shape == (b * count, d) and tokens_per_image(layout, select) == count
        if select != "all":
            assert (index.kind == kinds[select]).all()
        assert np.array_equal(index.image, np.repeat(np.arange(b), count))
    # patch tokens sit at n_prefix + y * w + x of their image's sequence
    tokens_TD, index = to_tokens(seq_BND, layout, "patch")
    pos = torch.as_tensor(n_cls + n_reg + index.y * w + index.x, dtype=torch.long)
    assert torch.equal(tokens_TD, seq_BND[torch.as_tensor(index.image, dtype=torch.long), pos])
    # 'all' keeps sequence order, prefix tokens are off the grid
    tokens_TD, index = to_tokens(seq_BND, layout, "all")
    assert torch.equal(tokens_TD, seq_BND.reshape(-1, d))
    prefix = index.kind != PATCH
    assert (index.y[prefix] == -1).all() and (index.y[~prefix] >= 0).all()


def test_pooled_and_gridless_sequences():
    pooled_BD = torch.randn(4, 6)
    tokens_TD, index = to_tokens(pooled_BD, TokenLayout("pooled", 6, None))
    assert torch.equal(tokens_TD, pooled_BD) and (index.kind == POOLED).all() and (index.x == -1).all()
    seq_BND = torch.randn(2, 3, 6)  # e.g. a pooling head's query outputs: not patches of the image
    tokens_TD, index = to_tokens(seq_BND, TokenLayout("sequence", 6, None))
    assert tokens_TD.shape == (6, 6) and (index.y == -1).all()
    assert tokens_per_image(TokenLayout("sequence", 6, None), n_seq=3) == 3


def test_cnn_maps_have_no_cls_tokens_and_shapes_are_checked():
    fmap_BCHW = torch.randn(1, 2, 3, 3)
    with pytest.raises(VisaeError, match="CNN feature map"):
        to_tokens(fmap_BCHW, TokenLayout("spatial", 2, (3, 3)), "cls")
    with pytest.raises(ValueError, match="does not match layout"):
        to_tokens(fmap_BCHW, TokenLayout("spatial", 2, (4, 4)))
    with pytest.raises(ValueError):
        TokenLayout("spatial", 2, None)


@pytest.mark.parametrize(
    "layout",
    [
        TokenLayout("spatial", 768, (14, 14)),
        TokenLayout("spatial", 96, (56, 56), channels_last=True),
        TokenLayout("sequence", 384, (16, 16), n_cls=1, n_registers=4),
        TokenLayout("sequence", 32, None),
        TokenLayout("pooled", 1000, None),
    ],
)
def test_layout_json_round_trip(layout):
    assert TokenLayout.from_json(json.loads(json.dumps(layout.to_json()))) == layout
