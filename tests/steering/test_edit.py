"""Edits are data: exact JSON round trips, refused when malformed, composed in order on the codes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from steer_fixtures import random_sae

from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError
from visae.steering.edit import Edit, LatentOp
from visae.steering.splice import check_edit, latent_acts, splice_tokens

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def ops(draw) -> LatentOp:
    op = draw(st.sampled_from(["set", "scale", "clamp", "zero", "add", "steer"]))
    where = draw(st.sampled_from(["all", "active", "cells", "cls", "mask"]))
    low = draw(st.none() | finite) if op == "clamp" else None
    high = (draw(finite) if low is None else low + abs(draw(finite))) if op == "clamp" else None
    return LatentOp(
        latents=draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=4)),
        op=op,
        value=draw(finite) if op in ("set", "scale", "add", "steer") else None,
        low=low,
        high=high,
        where=where,
        cells=draw(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=4)) if where == "cells" else None,
        mask=draw(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=2, max_size=2)) if where == "mask" else None,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(ops(), max_size=4))
def test_an_edit_survives_its_json_round_trip_exactly(op_list):
    edit = Edit(ops=op_list)
    assert Edit.model_validate_json(edit.model_dump_json()) == edit


@pytest.mark.parametrize(
    "fields",
    [
        dict(latents=[], op="zero"),
        dict(latents=[-1], op="zero"),
        dict(latents=[1], op="scale"),  # no value
        dict(latents=[1], op="zero", value=2.0),
        dict(latents=[1], op="clamp"),
        dict(latents=[1], op="clamp", low=2.0, high=1.0),
        dict(latents=[1], op="add", value=float("inf")),
        dict(latents=[1], op="set", value=1.0, where="cells"),  # cells missing
        dict(latents=[1], op="set", value=1.0, mask=[[True]]),  # a mask without where='mask'
        dict(latents=[1], op="wobble"),
    ],
)
def test_a_malformed_operation_is_refused_in_one_line(fields):
    with pytest.raises(VisaeError) as e:
        LatentOp.build(**fields)
    assert "\n" not in str(e.value)


MAP = TokenLayout("spatial", 8, (2, 3))
SEQ = TokenLayout("sequence", 8, (2, 3), n_cls=1, n_registers=2)


def codes_of(sae, x_BND):
    b, n, d = x_BND.shape
    return sae.encode(x_BND.reshape(-1, d)).dense().reshape(b, n, -1).detach()


@settings(max_examples=30, deadline=None)
@given(s=finite.filter(lambda v: abs(v) < 100), v=finite.filter(lambda v: abs(v) < 100), seed=st.integers(0, 1000))
def test_operations_compose_in_order_on_the_codes(s, v, seed):
    sae = random_sae(8, d_sae=16, seed=1)
    x_BND = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(seed))
    z_BN = codes_of(sae, x_BND)[..., 5]
    edit = Edit(ops=[LatentOp(latents=[5], op="scale", value=s), LatentOp(latents=[5], op="add", value=v),
                     LatentOp(latents=[5], op="clamp", high=50.0)])  # fmt: skip
    got_BND = splice_tokens(x_BND, MAP, sae, edit)
    want_BN = (z_BN * s + v).clamp(max=50.0)
    want_BND = x_BND + (want_BN - z_BN)[..., None] * sae.W_dec[5].detach()
    assert torch.allclose(got_BND, want_BND, atol=1e-4 * (1 + abs(s) + abs(v)))


def test_active_edits_only_tokens_where_the_latent_fires_and_never_the_prefix():
    sae = random_sae(8, d_sae=16, seed=2)
    x_BND = torch.randn(3, 9, 8, generator=torch.Generator().manual_seed(0))
    z_BNS = codes_of(sae, x_BND)
    i = int(((z_BNS[:, 3:] > 0).float().mean(dim=(0, 1)) - 0.5).abs().argmin())
    got_BND = splice_tokens(x_BND, SEQ, sae, Edit(ops=[LatentOp(latents=[i], op="set", value=7.0, where="active")]))
    moved_BN = (got_BND != x_BND).any(dim=2)
    fires_BN = z_BNS[..., i] > 0
    fires_BN[:, :3] = False
    assert torch.equal(moved_BN, fires_BN) and fires_BN.any() and not fires_BN.all()


def test_steer_adds_the_unit_decoder_direction_at_its_strength_on_every_patch():
    sae = random_sae(8, d_sae=16)
    x_BND = torch.randn(2, 9, 8)
    got_BND = splice_tokens(x_BND, SEQ, sae, Edit(ops=[LatentOp(latents=[4], op="steer", value=-3.0)]))
    unit_D = sae.W_dec[4].detach() / sae.W_dec[4].detach().norm()
    assert torch.allclose(got_BND[:, 3:] - x_BND[:, 3:], (-3.0 * unit_D).expand(2, 6, 8), atol=1e-5)
    assert torch.equal(got_BND[:, :3], x_BND[:, :3])


def test_sparse_codes_give_the_same_activations_as_dense_ones():
    sae = random_sae(8, d_sae=32, arch="topk", k=4)
    codes = sae.encode(torch.randn(20, 8))
    latents_U = torch.tensor([0, 3, 17, 31])
    assert codes.is_sparse
    assert torch.allclose(latent_acts(codes, latents_U), codes.dense()[:, latents_U].float())


def test_an_empty_edit_returns_the_tokens_themselves():
    x_BND = torch.randn(2, 6, 8)
    assert torch.equal(splice_tokens(x_BND, MAP, random_sae(8), Edit()), x_BND)


@pytest.mark.parametrize(
    "op, layout, words",
    [
        (LatentOp(latents=[16], op="zero"), MAP, "out of range"),
        (LatentOp(latents=[0], op="zero", where="mask", mask=[[True, False], [False, True]]), MAP, "mask has shape"),
        (LatentOp(latents=[0], op="zero", where="cells", cells=[(2, 0)]), MAP, "outside the layer"),
        (LatentOp(latents=[0], op="zero", where="cls"), MAP, "no CLS token"),
        (LatentOp(latents=[0], op="zero", where="cells", cells=[(0, 0)]), TokenLayout("pooled", 8, None), "needs a grid"),
    ],
)
def test_an_edit_the_layer_or_sae_cannot_take_is_refused_in_one_line(op, layout, words):
    with pytest.raises(VisaeError, match=words) as e:
        check_edit(Edit(ops=[op]), random_sae(8, d_sae=16), layout)
    assert "\n" not in str(e.value)
