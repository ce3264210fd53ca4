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
    # its value: the top k_aux = D/2 dead latents (ReLU) reconstruct the residual x - x_hat
    with torch.no_grad():
        pre_BS = _pre(sae, x).masked_fill(~dead, float("-inf"))
        top = pre_BS.topk(6, dim=1)
        resid_hat_BD = torch.zeros(20, 48).scatter(1, top.indices, top.values.relu()) @ sae.W_dec
        want = (resid_hat_BD - (x - out.recon_BD)).pow(2).sum(dim=1).mean()
    torch.testing.assert_close(out.aux["auxk"].detach(), want, rtol=1e-5, atol=1e-5)
    # with fewer dead latents than k_aux it is scaled down by n_dead / k_aux
    few = torch.zeros(48, dtype=torch.bool)
    few[:3] = True
    with torch.no_grad():
        out3 = sae(x, dead_S=few)
        top = _pre(sae, x)[:, :3].relu()
        want3 = 0.5 * ((top @ sae.W_dec[:3]) - (x - out3.recon_BD)).pow(2).sum(dim=1).mean()
    torch.testing.assert_close(out3.aux["auxk"], want3, rtol=1e-5, atol=1e-5)


def test_batchtopk_selects_k_per_token_on_average_and_learns_threshold():
    sae = _sae("batchtopk", k=3).train()
    x, x2 = torch.randn(64, 12), torch.randn(64, 12)
    out = sae(x)
    # training: the k * B largest positive pre-activations of the whole batch, wherever they fall
    pre_BS = _pre(sae, x).detach().relu()
    cut = pre_BS.flatten().topk(3 * 64).values[-1]
    torch.testing.assert_close(out.codes.dense(), torch.where(pre_BS >= cut, pre_BS, 0.0))
    assert out.codes.l0_B().float().mean() == pytest.approx(3.0, abs=0.1)
    assert out.codes.l0_B().min() != out.codes.l0_B().max()  # per batch, not per token
    # the threshold is a bias-corrected running average of each batch's smallest kept activation:
    # the first batch's value, then (0.99 * 0.01 m1 + 0.01 m2) / (1 - 0.99^2)
    m1 = float(out.codes.val_BK.detach()[out.codes.val_BK > 0].min())
    torch.testing.assert_close(sae.threshold, torch.full((48,), m1))
    out2 = sae(x2)
    m2 = float(out2.codes.val_BK.detach()[out2.codes.val_BK > 0].min())
    theta2 = (0.99 * 0.01 * m1 + 0.01 * m2) / (1 - 0.99**2)
    torch.testing.assert_close(sae.threshold, torch.full((48,), theta2))
    # inference: the per-token threshold, and no update of it
    sae.eval()
    dense = sae.encode(x).dense()
    pre = sae.pre_BS(x)
    torch.testing.assert_close(dense, torch.where(pre > theta2, pre, 0.0))
    sae(x2)
    torch.testing.assert_close(sae.threshold, torch.full((48,), theta2))


def _pre(sae, x_BD):
    """``(x - b_dec) @ W_enc + b_enc`` written out (not through the SAE's own method)."""
    return (x_BD - sae.b_dec) @ sae.W_enc + sae.b_enc


@pytest.mark.parametrize("arch", ALL)
def test_inference_codes_follow_the_architectures_equation(arch):
    sae = _sae(arch, k=4).eval()
    with torch.no_grad():
        sae.b_enc.normal_(std=0.3)
        sae.b_dec.normal_()
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.rand(48).add(0.05).log())
        elif arch in ("batchtopk", "matryoshka"):
            sae.threshold.fill_(0.4)
    x = torch.randn(40, 12) * 2
    with torch.no_grad():
        pre = _pre(sae, x)
        got = sae.encode(x).dense()
    if arch == "relu":  # ReLU(pre)
        want = pre.relu()
    elif arch == "topk":  # TopK_k(ReLU(pre))
        top = pre.topk(4, dim=1)
        want = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
    elif arch == "jumprelu":  # pre * H(pre - theta)
        want = pre * (pre > sae.threshold)
    else:  # a saved BatchTopK / Matryoshka is a JumpReLU with the learnt threshold
        want = pre * (pre > 0.4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert 0 < int((got != 0).sum()) < got.numel()  # the case is not degenerate


def _jumprelu_identity(theta_S, bandwidth):
    """A JumpReLU SAE whose pre-activations are its inputs (W_enc = I, biases 0, W_dec = I)."""
    n = len(theta_S)
    sae = create_sae(SAESpec(arch="jumprelu", d_in=n, d_sae=n, bandwidth=bandwidth))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(n))
        sae.W_dec.copy_(torch.eye(n))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.log_threshold.copy_(torch.tensor(theta_S).log())
    return sae


# Jumping Ahead (Rajamanoharan et al. 2024), eqs. 11-12, rectangle kernel K(u) = [|u| < 1/2]:
#   d/dtheta H(z - theta)          := -(1/eps)     K((z - theta)/eps)    (d/dz: 0)
#   d/dtheta JumpReLU_theta(z)     := -(theta/eps) K((z - theta)/eps)    (d/dz: H(z - theta))
# Here eps = 0.2 and theta = (0.5, 1, 2, 1): the window is |z - theta| < 0.1.
JR_THETA, JR_EPS = [0.5, 1.0, 2.0, 1.0], 0.2
JR_PRE_BS = [
    [0.45, 1.05, 2.50, 0.20],
    [0.55, 0.95, 1.95, 1.09],
    [0.61, 0.30, 2.08, 1.20],
]
JR_IN_WINDOW_BS = [  # by hand: |pre - theta| < 0.1
    [1, 1, 0, 0],
    [1, 1, 1, 1],
    [0, 0, 1, 0],
]
JR_ACTIVE_BS = [  # by hand: pre > theta
    [0, 1, 1, 0],
    [1, 0, 0, 1],
    [1, 0, 1, 1],
]


def test_jumprelu_step_pseudo_gradient_has_the_papers_magnitude():
    sae = _jumprelu_identity(JR_THETA, JR_EPS)
    x_BS = torch.tensor(JR_PRE_BS)
    out = sae(x_BS)
    torch.testing.assert_close(out.aux["l0"], torch.tensor(7 / 3))  # 7 active of 3 tokens
    out.aux["l0"].backward()
    # l0 = mean_b sum_s H: dl0/dtheta_s = -(1/eps) * (tokens in the window of s) / B
    in_window_S = torch.tensor([2.0, 2.0, 2.0, 1.0])
    dl0_dtheta_S = -(1 / JR_EPS) * in_window_S / 3  # -10/3, -10/3, -10/3, -5/3
    theta_S = torch.tensor(JR_THETA)
    # theta = exp(log_threshold): d/dlog_theta = theta * d/dtheta -> -5/3, -10/3, -20/3, -5/3
    torch.testing.assert_close(sae.log_threshold.grad, theta_S * dl0_dtheta_S, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sae.log_threshold.grad, torch.tensor([-5 / 3, -10 / 3, -20 / 3, -5 / 3]))
    # the step passes no gradient to the pre-activations (nor to what made them)
    assert sae.b_enc.grad is None or sae.b_enc.grad.abs().max() == 0
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().max() == 0


def test_jumprelu_output_pseudo_gradient_has_the_papers_magnitude():
    sae = _jumprelu_identity(JR_THETA, JR_EPS)
    x_BS = torch.tensor(JR_PRE_BS)
    z_BS = sae.encode(x_BS).dense_BS
    active_BS, window_BS = torch.tensor(JR_ACTIVE_BS).float(), torch.tensor(JR_IN_WINDOW_BS).float()
    torch.testing.assert_close(z_BS, x_BS * active_BS)
    g_BS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 0.5, 2.0, -3.0], [2.0, -2.0, 1.0, 0.5]])
    (z_BS * g_BS).sum().backward()
    theta_S = torch.tensor(JR_THETA)
    dtheta_S = -(theta_S / JR_EPS) * (window_BS * g_BS).sum(dim=0)  # -10, -12.5, -30, 15
    torch.testing.assert_close(dtheta_S, torch.tensor([-10.0, -12.5, -30.0, 15.0]))
    torch.testing.assert_close(sae.log_threshold.grad, theta_S * dtheta_S, rtol=1e-6, atol=1e-5)
    # d z / d pre = H(pre - theta): b_enc gets the sum over tokens of g where the latent is on
    torch.testing.assert_close(sae.b_enc.grad, (g_BS * active_BS).sum(dim=0))


def test_jumprelu_training_loss_threshold_gradient_by_hand():
    """The full loss ``||x - x_hat||^2 + lambda * L0``: both pseudo-derivatives, weighted as trained."""
    sae = _jumprelu_identity(JR_THETA, JR_EPS)
    torch.manual_seed(0)
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(4, 4))  # reconstruction error differs per latent
    x_BS, lam, B = torch.tensor(JR_PRE_BS), 0.7, 3
    out = sae(x_BS)
    sae.loss(x_BS, out, {"l0": lam})[0].backward()
    active_BS, window_BS = torch.tensor(JR_ACTIVE_BS).float(), torch.tensor(JR_IN_WINDOW_BS).float()
    with torch.no_grad():
        x_hat_BD = (x_BS * active_BS) @ sae.W_dec
        dmse_dz_BS = 2 * (x_hat_BD - x_BS) @ sae.W_dec.T / B  # mse = sum over D, mean over tokens
    theta_S = torch.tensor(JR_THETA)
    dtheta_S = -(theta_S / JR_EPS) * (window_BS * dmse_dz_BS).sum(0) - lam * (1 / JR_EPS) * window_BS.sum(0) / B
    torch.testing.assert_close(sae.log_threshold.grad, theta_S * dtheta_S, rtol=1e-5, atol=1e-5)


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


def test_batchtopk_loads_a_state_saved_before_the_bias_corrected_threshold():
    old = _sae("batchtopk", k=3)
    old.threshold.fill_(0.5)
    state = {k: v for k, v in old.state_dict().items() if k != "threshold_ema"}
    new = _sae("batchtopk", k=3)
    new.load_state_dict(state)
    torch.testing.assert_close(new.threshold, torch.full((48,), 0.5))
    new.train()(torch.randn(64, 12))  # the running average goes on from the saved value
    assert float(new.threshold_ema[1]) == 2.0 and float(new.threshold[0]) != 0.5
