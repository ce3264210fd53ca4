"""Every architecture keeps the one contract; the maths of each is what it claims."""

from __future__ import annotations

import pytest
import torch

from visae.errors import VisaeError
from visae.sae import ARCHS, SAESpec, create_sae
from visae.sae.contract import Codes
from visae.sae.topk import TopKSAE

ALL = ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"]


def _sae(arch, d=12, s=48, k=4, seed=0):
    torch.manual_seed(seed)
    return create_sae(SAESpec(arch=arch, d_in=d, d_sae=s, k=k if ARCHS.get(arch).needs_k else None))


def test_registry_lists_every_architecture():
    assert set(ALL) <= set(ARCHS.names())
    with pytest.raises(VisaeError, match="did you mean 'topk'"):
        ARCHS.get("topkk")


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("training", [True, False])
def test_forward_contract(arch, training):
    sae = _sae(arch).train(training)
    x = torch.randn(20, 12)
    out = sae(x, dead_S=torch.ones(48, dtype=torch.bool))
    assert out.recon_BD.shape == (20, 12)
    assert isinstance(out.codes, Codes) and out.codes.dense().shape == (20, 48)
    # the reconstruction is the decode of the codes
    torch.testing.assert_close(sae.decode(out.codes), out.recon_BD)
    torch.testing.assert_close(out.codes.dense() @ sae.W_dec + sae.b_dec, out.recon_BD, atol=1e-5, rtol=1e-5)
    assert out.codes.count_S().sum() == out.codes.l0_B().sum()
    loss, terms = sae.loss(x, out)
    assert torch.isfinite(loss) and "mse" in terms
    loss.backward()
    assert all(p.grad is not None for p in sae.parameters())


def test_topk_codes_are_k_sparse_and_nonnegative():
    sae = _sae("topk", k=5)
    codes = sae.encode(torch.randn(30, 12))
    assert codes.is_sparse and codes.idx_BK.shape == (30, 5)
    assert (codes.val_BK >= 0).all() and (codes.l0_B() <= 5).all()


def test_auxk_only_with_dead_latents():
    sae = _sae("topk")
    x = torch.randn(20, 12)
    assert "auxk" not in sae(x).aux
    dead = torch.zeros(48, dtype=torch.bool)
    dead[:10] = True
    out = sae(x, dead_S=dead)
    out.aux["auxk"].backward()
    alive_cols = sae.W_enc.grad[:, 10:]
    assert alive_cols.abs().sum() == 0 and sae.W_enc.grad[:, :10].abs().sum() > 0


def test_batchtopk_selects_k_per_token_on_average_and_learns_threshold():
    sae = _sae("batchtopk", k=3).train()
    x = torch.randn(64, 12)
    out = sae(x)
    assert out.codes.l0_B().float().mean() == pytest.approx(3.0, abs=0.1)
    assert sae.threshold.min() > 0  # set from the first batch
    sae.eval()
    dense = sae.encode(x).dense()
    pre = sae.pre_BS(x)
    assert ((dense > 0) == (pre > sae.threshold)).all()


def test_jumprelu_threshold_gets_straight_through_gradient():
    sae = _sae("jumprelu")
    with torch.no_grad():
        sae.log_threshold.fill_(0.0)  # theta = 1
    x = torch.randn(256, 12) * 3
    out = sae(x)
    out.aux["l0"].backward()
    # raising theta lowers L0: the pseudo-gradient on log theta is negative where pre ~ theta
    assert sae.log_threshold.grad.sum() < 0
    pre = sae.pre_BS(x).detach()
    torch.testing.assert_close(out.codes.dense_BS, pre * (pre > 1.0))


def test_matryoshka_prefix_loss_sums_nested_reconstructions():
    spec = SAESpec(arch="matryoshka", d_in=12, d_sae=48, k=4, prefixes=[6, 24, 48])
    sae = create_sae(spec).train()
    x = torch.randn(32, 12)
    out = sae(x)
    dense = out.codes.dense()
    want = sum(((dense[:, :m] @ sae.W_dec[:m] + sae.b_dec) - x).pow(2).sum(-1).mean() for m in (6, 24))
    torch.testing.assert_close(out.aux["prefix"], want, atol=1e-4, rtol=1e-4)
    with pytest.raises(VisaeError, match="prefixes"):
        create_sae(SAESpec(arch="matryoshka", d_in=12, d_sae=48, k=4, prefixes=[24, 6, 48]))


def test_decoder_constraint():
    sae = _sae("topk")
    x = torch.randn(16, 12)
    sae.loss(x, sae(x))[0].backward()
    sae.remove_parallel_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(3)
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))
    relu = _sae("relu")
    assert not relu.unit_norm_decoder and relu.W_dec.norm(dim=1).max() < 0.2


@pytest.mark.parametrize("arch", ALL)
def test_fold_normalization_gives_same_function_on_raw_inputs(arch):
    sae = _sae(arch).eval()
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
    mean, scale = torch.randn(12), 0.37
    x_raw = torch.randn(10, 12) * 5 + mean
    x_n = (x_raw - mean) * scale
    codes_n, recon_n = sae.encode(x_n).dense(), sae(x_n).recon_BD
    sae.fold_normalization(mean, scale)
    torch.testing.assert_close(sae.encode(x_raw).dense(), codes_n, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sae(x_raw).recon_BD, recon_n / scale + mean, atol=1e-4, rtol=1e-4)


def test_spec_refuses_bad_values():
    with pytest.raises(VisaeError, match="needs k"):
        SAESpec.build(arch="topk", d_in=4, d_sae=8)
    with pytest.raises(VisaeError, match="larger than"):
        SAESpec.build(arch="topk", d_in=4, d_sae=8, k=9)
    assert isinstance(_sae("topk"), TopKSAE)
