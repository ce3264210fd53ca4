"""Matryoshka SAE (Bussmann et al. 2025; Nabeshima 2024): nested dictionaries.

BatchTopK codes z; every prefix ``m`` of the latents must reconstruct x on its own:

    L = sum_{m in prefixes} ||x - (z[:m] W_dec[:m] + b_dec)||^2

The full prefix (m = S) is the ordinary reconstruction term; the strict prefixes are the
aux term 'prefix'. Early latents learn general features, later ones refine them.
"""

from __future__ import annotations

from torch import Tensor

from visae.errors import VisaeError
from visae.sae.base import ARCHS, SAESpec
from visae.sae.batchtopk import BatchTopKSAE
from visae.sae.contract import Codes, SAEOutput
from visae.sae.topk import auxk_loss


def default_prefixes(d_sae: int, n: int = 5) -> list[int]:
    """d_sae/16, /8, /4, /2, d_sae (fewer when d_sae is small)."""
    sizes = sorted({max(1, d_sae >> i) for i in range(n)})
    return sizes


def check_prefixes(prefixes: list[int], d_sae: int) -> list[int]:
    if not prefixes or prefixes[-1] != d_sae or any(a >= b for a, b in zip(prefixes, prefixes[1:])) or prefixes[0] < 1:
        raise VisaeError(
            f"matryoshka prefixes {prefixes} must increase strictly and end at d_sae={d_sae}",
            "e.g. prefixes = [S/16, S/4, S]",
        )
    return prefixes


def prefix_codes(codes: Codes, m: int) -> Codes:
    """The same codes with every latent at index >= m switched off."""
    if codes.idx_BK is not None:
        return Codes(codes.d_sae, codes.idx_BK, codes.val_BK * (codes.idx_BK < m))
    dense_BS = codes.dense_BS.clone()
    dense_BS[:, m:] = 0
    return Codes(codes.d_sae, dense_BS=dense_BS)


@ARCHS.register("matryoshka")
class MatryoshkaSAE(BatchTopKSAE):
    def __init__(self, spec: SAESpec):
        super().__init__(spec)
        self.prefixes = check_prefixes(spec.prefixes or default_prefixes(spec.d_sae), spec.d_sae)

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        codes = self.batch_codes(x_BD) if self.training else self.encode(x_BD)
        recon_BD = self.decode(codes)
        prefix = recon_BD.new_zeros(())
        for m in self.prefixes[:-1]:
            recon_m_BD = self.decode(prefix_codes(codes, m))
            prefix = prefix + (recon_m_BD - x_BD).pow(2).sum(dim=-1).mean()
        aux = {"prefix": prefix}
        if self.training and dead_S is not None and bool(dead_S.any()):
            aux["auxk"] = auxk_loss(self, x_BD, recon_BD, dead_S)
        return SAEOutput(recon_BD, codes, aux)
