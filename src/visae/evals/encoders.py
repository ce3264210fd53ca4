"""The SAE and its baselines behind one contract: ``encode(acts_TD) -> codes_TS``, non-negative, float32.

Every metric scores each of these with the same code path (docs/metrics.md, "Baselines"):

- ``sae``: the saved, inference-time SAE (it takes raw activations);
- ``random_sae``: an SAE of the same architecture and width, randomly initialised (fixed seed), its
  normalisation folded in as the trainer folds a trained one;
- ``raw``: the raw channels, centred on the training tokens' mean, each sign a unit:
  relu(x_d − μ_d) and relu(μ_d − x_d) (2D units);
- ``pca``: the projections on the principal axes of the training tokens, each sign a unit (2D units);
- ``kmeans``: k-means with as many centroids as the SAE has latents, fitted on training tokens; a
  token activates its nearest centroid only, with value 1 (saev's k-means baseline).

PCA and k-means are fitted on a seeded sample of the run's training store (never on held-out tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

CHUNK = 16_384
"""Tokens encoded at once."""


@dataclass
class Encoder:
    name: str
    """sae, random_sae, raw, pca or kmeans."""
    width: int
    """Units of its codes."""
    what: str
    """What its units are, in words."""
    fn: Any
    """acts_TD (float32) -> codes_TS (float32, >= 0)."""

    @torch.no_grad()
    def encode(self, acts_TD: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fn(acts_TD[a : a + CHUNK]).float() for a in range(0, len(acts_TD), CHUNK)]) if len(acts_TD) else acts_TD.new_zeros(0, self.width)


def sae_encoder(sae: Any, name: str = "sae", what: str = "latents") -> Encoder:
    from visae.analysis.inputs import encode

    device = next(sae.parameters()).device
    return Encoder(name, int(sae.d_sae), what, lambda x: encode(sae, x.to(device)).float().cpu())


def signed(x_TD: torch.Tensor) -> torch.Tensor:
    """Each coordinate's two signs as two non-negative units: [relu(x), relu(−x)]."""
    return torch.cat([x_TD.clamp_min(0), (-x_TD).clamp_min(0)], dim=1)


def raw_encoder(mean_D: torch.Tensor) -> Encoder:
    return Encoder("raw", 2 * len(mean_D), "signed raw channels", lambda x: signed(x - mean_D))


def pca_encoder(sample_ND: torch.Tensor) -> Encoder:
    """Projections on every principal axis of ``sample_ND`` (descending variance), both signs."""
    mean_D = sample_ND.double().mean(0)
    centred = sample_ND.double() - mean_D
    _, _, Vh = torch.linalg.svd(centred, full_matrices=False)
    axes_DK = Vh.T.float()
    m = mean_D.float()
    return Encoder("pca", 2 * axes_DK.shape[1], "signed principal axes", lambda x: signed((x - m) @ axes_DK))


def kmeans_encoder(sample_ND: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> Encoder:
    """Lloyd's k-means (k-means++ seeding) on ``sample_ND``; a token's code is one-hot on its nearest centroid."""
    cent_KD = kmeans(sample_ND, k, iters, seed)
    sq_K = (cent_KD**2).sum(1)

    def fn(x_TD: torch.Tensor) -> torch.Tensor:
        d_TK = sq_K[None] - 2 * x_TD @ cent_KD.T  # ||x - c||^2 without the ||x||^2 term
        out = torch.zeros(len(x_TD), len(cent_KD))
        out[torch.arange(len(x_TD)), d_TK.argmin(1)] = 1.0
        return out

    return Encoder("kmeans", len(cent_KD), "k-means centroids (one-hot)", fn)


def kmeans(x_ND: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x_ND = x_ND.float()
    k = min(k, len(x_ND))
    cent = [x_ND[torch.randint(len(x_ND), (1,), generator=g)].squeeze(0)]
    d_N = ((x_ND - cent[0]) ** 2).sum(1)
    for _ in range(1, k):  # k-means++: the next centre with probability proportional to the squared distance
        nxt = x_ND[torch.multinomial(d_N.clamp_min(1e-12), 1, generator=g)].squeeze(0)
        cent.append(nxt)
        d_N = torch.minimum(d_N, ((x_ND - nxt) ** 2).sum(1))
    cent_KD = torch.stack(cent)
    for _ in range(iters):
        assign_N = ((cent_KD**2).sum(1)[None] - 2 * x_ND @ cent_KD.T).argmin(1)
        sums_KD = torch.zeros_like(cent_KD).index_add_(0, assign_N, x_ND)
        counts_K = torch.bincount(assign_N, minlength=len(cent_KD)).float()
        cent_KD = torch.where(counts_K[:, None] > 0, sums_KD / counts_K.clamp_min(1)[:, None], cent_KD)
    return cent_KD
