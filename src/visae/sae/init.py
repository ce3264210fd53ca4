"""Data-dependent initialisation: ``b_dec`` at the geometric median of a sample.

The decoder starts as random unit (or 0.1-norm) rows and the encoder as its transpose
(``SAE.__init__``); here ``b_dec`` moves to the point minimising the summed distance to
the sample (Weiszfeld's algorithm), which a few outliers cannot drag away.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visae.sae.base import SAE
from visae.sae.source import TokenSource


@torch.no_grad()
def geometric_median(points_ND: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """argmin_y sum_n ||x_n - y|| by Weiszfeld iterations (float64)."""
    x_ND = points_ND.double()
    y_D = x_ND.mean(dim=0)
    for _ in range(iters):
        w_N = 1.0 / (x_ND - y_D).norm(dim=1).clamp_min(1e-12)
        y_new_D = (w_N[:, None] * x_ND).sum(dim=0) / w_N.sum()
        moved = (y_new_D - y_D).norm() / y_D.norm().clamp_min(1e-12)
        y_D = y_new_D
        if moved < tol:
            break
    return y_D.to(points_ND.dtype)


def sample_tokens(source: TokenSource, n: int, seed: int) -> Tensor:
    """Up to ``n`` tokens of the source drawn without replacement (seeded)."""
    return source.sample(n, seed, torch.float32)


@torch.no_grad()
def init_b_dec(sae: SAE, sample_BD: Tensor) -> None:
    """Put ``b_dec`` at the geometric median of (already normalised) ``sample_BD``."""
    sae.b_dec.copy_(geometric_median(sample_BD).to(sae.b_dec))
