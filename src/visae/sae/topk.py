"""TopK SAE (Gao et al. 2024) with the AuxK loss on dead latents.

    z = TopK_k(ReLU((x - b_dec) W_enc + b_enc))
    x_hat = z W_dec + b_dec
    L = ||x - x_hat||^2 + alpha * AuxK

AuxK: the top ``k_aux = D/2`` dead latents reconstruct the residual ``x - x_hat``; it
revives latents that have not fired for a while. Selection, encoder gradient and decode
are the sparse kernels of ``kernels.py``: only the selected (token, latent) pairs get
gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visae.sae import kernels
from visae.sae.base import ARCHS, SAE
from visae.sae.contract import Codes, SAEOutput


def auxk_loss(sae: SAE, x_BD: Tensor, recon_BD: Tensor, dead_S: Tensor) -> Tensor:
    """Dead latents' top-k_aux reconstruction of the residual, scaled down when few are dead."""
    n_dead = int(dead_S.sum())
    k_aux = sae.d_in // 2
    scale = min(n_dead / k_aux, 1.0)
    xc_BD = x_BD - sae.b_dec.detach()
    sel = kernels.select_dead_topk(xc_BD, sae.W_enc, sae.b_enc, dead_S, k_aux)
    val_BK = torch.relu(kernels.encoder_values(x_BD, sae.b_dec, sae.W_enc, sae.b_enc, sel))
    resid_hat_BD = kernels.sparse_decode(sel.idx_BK, val_BK, sae.W_dec)
    resid_BD = (x_BD - recon_BD).detach()
    return scale * (resid_hat_BD - resid_BD).pow(2).sum(dim=-1).mean()


@ARCHS.register("topk")
class TopKSAE(SAE):
    needs_k = True
    saelens_arch = "topk"

    def encode(self, x_BD: Tensor) -> Codes:
        sel = kernels.select_topk(x_BD - self.b_dec.detach(), self.W_enc, self.b_enc, self.spec.k)
        val_BK = torch.relu(kernels.encoder_values(x_BD, self.b_dec, self.W_enc, self.b_enc, sel))
        return Codes(self.d_sae, sel.idx_BK, val_BK)

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        codes = self.encode(x_BD)
        recon_BD = self.decode(codes)
        aux = {}
        if dead_S is not None and bool(dead_S.any()):
            aux["auxk"] = auxk_loss(self, x_BD, recon_BD, dead_S)
        return SAEOutput(recon_BD, codes, aux)
