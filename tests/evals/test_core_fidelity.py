"""Reconstruction and spliced fidelity against hand-computed values, and on the small real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visae.evals import fidelity, reconstruction
from visae.evals.reconstruction import reconstruction_of
from visae.sae import SAESpec, create_sae


def identity_sae(d: int):
    """A ReLU SAE with 2d latents whose codes are [relu(x), relu(-x)] and decoder [I; -I]: it reconstructs exactly."""
    sae = create_sae(SAESpec(arch="relu", d_in=d, d_sae=2 * d))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_dec.zero_()
    return sae.eval()


def test_an_exact_sae_scores_perfectly_and_a_halving_one_is_measured_by_hand():
    x = torch.tensor([[1.0, -2.0], [3.0, 0.0], [-1.0, 1.0]])
    r = reconstruction_of(identity_sae(2), x)
    assert r["mse"] == pytest.approx(0) and r["nmse"] == pytest.approx(0) and r["cosine"] == pytest.approx(1)
    assert r["explained_variance"] == pytest.approx(1) and r["relative_bias"] == pytest.approx(1)
    assert r["l0"] == pytest.approx(5 / 3) and r["l1"] == pytest.approx((3 + 3 + 2) / 3)
    assert r["dead"] == pytest.approx(0.0)  # every one of the 4 units fires on some token
    half = identity_sae(2)
    with torch.no_grad():
        half.W_dec.mul_(0.5)  # x_hat = x / 2: residual x / 2
    r = reconstruction_of(half, x)
    sq = float((x**2).sum())
    centred = float(((x - x.mean(0)) ** 2).sum())
    assert r["mse"] == pytest.approx(sq / 4 / 6) and r["nmse"] == pytest.approx(sq / 4 / centred)
    assert r["relative_bias"] == pytest.approx(2.0)  # x_hat must be scaled by 2 to fit x
    assert r["cosine"] == pytest.approx(1.0)


def test_core_on_the_real_run_beats_its_random_init_twin(ctx):
    res = reconstruction.evaluate(ctx)
    json.dumps(res, allow_nan=False)
    assert res["tokens"] == len(ctx.heldout.acts_TD) == 132 * 64
    assert res["sae"]["nmse"] < res["random_sae"]["nmse"] and res["sae"]["l0"] == pytest.approx(4.0)
    assert res["train_mean"]["nmse"] == pytest.approx(1.0, abs=0.2)
    head, rows = reconstruction.table(res)
    assert head == ["measure", "SAE", "random-init SAE"] and rows[1][0] == "nmse"
    assert "random-init SAE" in reconstruction.headline(res)["reconstruction"]


def test_fidelity_orders_clean_sae_and_ablations(ctx):
    res = fidelity.evaluate(ctx)
    json.dumps(res, allow_nan=False)
    assert res["clean"]["kl_to_clean"] == pytest.approx(0.0, abs=1e-9)
    assert res["sae"]["kl_to_clean"] < res["zero"]["kl_to_clean"] and res["sae"]["kl_to_clean"] < res["mean"]["kl_to_clean"]
    lr = res["sae"]["loss_recovered_mean"]
    ce = {k: res[k]["cross_entropy"] for k in ("clean", "sae", "mean")}
    assert lr == pytest.approx((ce["mean"] - ce["sae"]) / (ce["mean"] - ce["clean"]))
    head, rows = fidelity.table(res)
    assert head[:3] == ["measure", "clean", "sae"] and len(rows) == 6


def test_the_replace_hook_sets_every_patch_token_and_only_while_attached(ctx):
    s = ctx.steerer()
    imgs = s.images(ctx.heldout.split, ctx.heldout.index_B[:2])
    value = torch.arange(s.layout.dim, dtype=torch.float32)
    with fidelity.Replace(s, value):
        x_BND = s.layer_tokens(imgs.pixels_BCHW)
    assert torch.equal(x_BND, value.expand_as(x_BND))
    assert not torch.equal(s.layer_tokens(imgs.pixels_BCHW), x_BND)
    assert np.isfinite(s.logits(imgs.pixels_BCHW).numpy()).all()
