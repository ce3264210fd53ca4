"""Held-out evaluation of an SAE as it is used: inference-time codes, float64 sums.

For held-out tokens ``x`` (rows), reconstructions ``x_hat`` of the SAE in eval mode (BatchTopK
and JumpReLU thresholds as saved) and residuals ``r = x - x_hat``:

    NMSE = sum ||r||^2 / sum ||x - mean(x)||^2
    explained variance = 1 - sum ||r - mean(r)||^2 / sum ||x - mean(x)||^2
    L0 = mean number of non-zero codes per token
    dead = share of latents that never fire on the held-out tokens
    dense = share of latents that fire on more than DENSE_RATE of them

Every sum is accumulated in float64 over batches, so the result does not depend on the
batch size. Definitions: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from visae.sae.base import SAE

DENSE_RATE = 0.1
"""A latent firing on more than this share of tokens counts as dense."""


class HeldOutSums:
    """Running float64 sums over evaluated tokens."""

    def __init__(self, d: int, s: int):
        self.n = 0
        self.sum_x_D = torch.zeros(d, dtype=torch.float64)
        self.sq_x = 0.0
        self.sum_r_D = torch.zeros(d, dtype=torch.float64)
        self.sq_r = 0.0
        self.l0 = 0.0
        self.fired_S = torch.zeros(s, dtype=torch.int64)

    def add(self, x_BD: Tensor, recon_BD: Tensor, l0_B: Tensor, count_S: Tensor) -> None:
        x, r = x_BD.double().cpu(), (x_BD.double() - recon_BD.double()).cpu()
        self.n += x.shape[0]
        self.sum_x_D += x.sum(0)
        self.sq_x += float(x.pow(2).sum())
        self.sum_r_D += r.sum(0)
        self.sq_r += float(r.pow(2).sum())
        self.l0 += float(l0_B.double().sum())
        self.fired_S += count_S.cpu().to(torch.int64)

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        var_x = self.sq_x - float(self.sum_x_D.pow(2).sum()) / n  # sum ||x - mean(x)||^2
        var_r = self.sq_r - float(self.sum_r_D.pow(2).sum()) / n
        var_x = max(var_x, 1e-300)
        return {
            "nmse": self.sq_r / var_x,
            "explained_variance": 1.0 - var_r / var_x,
            "l0": self.l0 / n,
            "dead_pct": 100.0 * float((self.fired_S == 0).double().mean()),
            "dense_pct": 100.0 * float((self.fired_S > DENSE_RATE * n).double().mean()),
            "eval_tokens": self.n,
        }


@torch.no_grad()
def evaluate(sae: SAE, chunks: Iterable[Tensor], *, batch_size: int = 4096,
             prepare: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:  # fmt: skip
    """Metrics of ``sae`` in eval mode on the tokens of ``chunks`` (each ``prepare``d first, e.g.
    normalised and moved to the SAE's device). The SAE's train/eval mode is restored after."""
    was_training = sae.training
    sae.eval()
    sums = HeldOutSums(sae.d_in, sae.d_sae)
    device = sae.W_dec.device
    try:
        for chunk_TD in chunks:
            for a in range(0, chunk_TD.shape[0], batch_size):
                x_BD = chunk_TD[a : a + batch_size].to(device, torch.float32)
                if prepare is not None:
                    x_BD = prepare(x_BD)
                out = sae(x_BD)
                sums.add(x_BD, out.recon_BD.float(), out.codes.l0_B(), out.codes.count_S())
    finally:
        sae.train(was_training)
    return sums.result()
