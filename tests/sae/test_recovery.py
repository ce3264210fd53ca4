"""Every architecture recovers a planted sparse dictionary; the saved BatchTopK keeps L0 ~ k.

Data: tokens are sums of K=4 of A=64 unit atoms in D=32 (2x overcomplete) with
coefficients in [0.5, 2.5], + Gaussian noise (std 0.05 per coordinate) + a constant
offset. Each SAE (S=128 latents, twice the atoms) trains through ``Member.step`` as
``train()`` drives it, on normalised tokens, then has the normalisation folded in and runs
in eval mode, as a saved SAE does. Decoder rows are matched one-to-one to the atoms
(Hungarian assignment on signed cosine).

Measured on this CPU (torch 2.13, seed 0; seeds 1-2 in brackets): matched mean cosine
relu 0.988 (0.988, 0.990), topk 0.997 (0.988, 0.998), batchtopk 0.991 (0.985, 0.975),
jumprelu 0.995 (0.996, 0.996), matryoshka 0.991 (0.976, 0.976); atoms at cosine > 0.9:
>= 98 % for seed 0, >= 95 % for every architecture and seed. An untrained SAE: 0.44, 0 %.
"""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from visae.sae import SAESpec, create_sae
from visae.sae.base import SAE
from visae.sae.init import init_b_dec
from visae.sae.member import Member
from visae.sae.source import TensorSource
from visae.sae.train_config import SAEHparams, TrainConfig

from sae_fixtures import planted

D, A, S, K = 32, 64, 128, 4
NOISE = 0.05
STEPS, BATCH = 600, 256

MEAN_COS_MIN = 0.95
"""Bound on the matched mean cosine between planted atoms and decoder rows."""
RECOVERED_MIN = 0.90
"""Bound on the fraction of atoms matched at cosine > 0.9."""

HPARAMS = {
    # L1 weight for D=32 (the default 5 is for inputs of mean squared norm D in the hundreds): L0 ~ 13
    "relu": dict(lr=4e-3, sparsity_coeff=1.0),
    "topk": dict(lr=8e-3, k=K),
    "batchtopk": dict(lr=8e-3, k=K),
    # the threshold starts at 0.3 (pre-activations are O(1) here) in a 0.2-wide window: it must learn
    "jumprelu": dict(lr=4e-3, sparsity_coeff=2.0, threshold_init=0.3, bandwidth=0.2),
    # a first level with room for every atom: with fewer first-level latents than equally frequent
    # atoms (the default prefixes), those latents blend atoms by design (cos ~0.85 here)
    "matryoshka": dict(lr=8e-3, k=K, prefixes=[96, S]),
}


def _fit(arch: str, seed: int = 0) -> tuple[SAE, torch.Tensor]:
    """Train one SAE on the planted tokens as ``train()`` would; return it folded, in eval mode."""
    x_ND, atoms_AD = planted(n=20_000, d=D, s=A, k=K, noise=NOISE)
    source = TensorSource(x_ND)
    mean_D, scale = source.mean_D, source.scale
    hp = SAEHparams(arch=arch, d_sae=S, **HPARAMS[arch])
    cfg = TrainConfig.build(store="unused", out="unused", saes=[hp], batch_size=BATCH, seed=seed)
    torch.manual_seed(seed)
    sae = create_sae(hp.spec(D))
    init_b_dec(sae, (x_ND[:512] - mean_D) * scale)
    member = Member(hp, sae, cfg, STEPS, dead_tokens=5_000)
    batches = source.batches(BATCH, seed=seed)
    for step in range(STEPS):
        member.step((next(batches) - mean_D) * scale, step, measure=False)
    sae.eval()
    sae.fold_normalization(mean_D, scale)
    return sae, atoms_AD


def matched_cosines(W_dec_SD: torch.Tensor, atoms_AD: torch.Tensor) -> torch.Tensor:
    """Cosine of each planted atom with the decoder row the Hungarian assignment gives it."""
    W_SD = W_dec_SD.detach() / W_dec_SD.detach().norm(dim=1, keepdim=True)
    cos_SA = (W_SD @ atoms_AD.T).numpy()
    rows, cols = linear_sum_assignment(-cos_SA)
    return torch.as_tensor(cos_SA[rows, cols])


def _fresh_tokens(n: int = 4096) -> torch.Tensor:
    """Tokens from the same dictionary and distribution, never seen in training."""
    return planted(n=n, d=D, s=A, k=K, noise=NOISE, draw_seed=12345)[0]


@pytest.fixture(scope="module")
def fitted():
    cache: dict[str, tuple[SAE, torch.Tensor]] = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = _fit(arch)
        return cache[arch]

    return get


def test_matching_measure_fails_an_untrained_sae():
    _, atoms_AD = planted(n=1, d=D, s=A, k=K)
    torch.manual_seed(0)  # the seed _fit uses: its initial decoder is not the planted dictionary
    sae = create_sae(SAESpec(arch="topk", d_in=D, d_sae=S, k=K))
    cos_A = matched_cosines(sae.W_dec, atoms_AD)
    assert cos_A.mean() < 0.7 and (cos_A > 0.9).float().mean() < 0.05
    # and gives 1 to the atoms themselves, in any order among other rows
    W_SD = torch.cat([atoms_AD, torch.randn(S - A, D)])[torch.randperm(S)]
    torch.testing.assert_close(matched_cosines(W_SD, atoms_AD), torch.ones(A))


@pytest.mark.parametrize("arch", list(HPARAMS))
def test_planted_dictionary_is_recovered(arch, fitted):
    sae, atoms_AD = fitted(arch)
    cos_A = matched_cosines(sae.W_dec, atoms_AD)
    assert cos_A.mean() >= MEAN_COS_MIN, f"{arch}: matched mean cosine {cos_A.mean():.3f}"
    recovered = float((cos_A > 0.9).double().mean())
    assert recovered >= RECOVERED_MIN, f"{arch}: {recovered:.0%} of atoms at cosine > 0.9"
    # the saved (folded, inference-time) SAE reconstructs fresh raw tokens (measured 0.09-0.12)
    x_ND = _fresh_tokens()
    with torch.no_grad():
        out = sae(x_ND)
    nmse = (out.recon_BD - x_ND).pow(2).sum() / (x_ND - x_ND.mean(dim=0)).pow(2).sum()
    assert nmse < 0.2, f"{arch}: held-out NMSE {nmse:.3f}"


@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka"])
def test_batchtopk_inference_l0_is_close_to_k(arch, fitted):
    """The saved SAE (per-token threshold, not the batch selection) keeps k latents a token, within 15 %.

    Measured 3.92-3.95 for k=4 after 600 steps (3.5 after 300: the running threshold lags
    the selection cutoff, which falls while the encoder trains).
    """
    sae, _ = fitted(arch)
    assert not sae.training and float(sae.threshold.min()) > 0
    x_ND = _fresh_tokens()
    with torch.no_grad():
        codes = sae.encode(x_ND)
    l0 = float(codes.l0_B().float().mean())
    assert abs(l0 - K) <= 0.15 * K, f"{arch}: inference L0 {l0:.2f} for k={K}"
    # per token, not per batch: the first token alone gets the codes it gets in the batch
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x_ND[:1]).dense(), codes.dense()[:1])


def test_jumprelu_learns_its_threshold(fitted):
    """The threshold rose from its init and L0 came down to ~k: the L0 term trained it."""
    sae, _ = fitted("jumprelu")
    theta_S = sae.threshold.detach()
    assert float(theta_S.median()) > 2 * HPARAMS["jumprelu"]["threshold_init"]
    with torch.no_grad():
        l0 = float(sae.encode(_fresh_tokens()).l0_B().float().mean())
    assert K / 2 <= l0 <= 1.5 * K, f"inference L0 {l0:.2f}"
