"""ReLU SAE with the decoder-norm-weighted L1 penalty (Anthropic, April 2024 update).

    z = ReLU((x - b_dec) W_enc + b_enc)
    x_hat = z W_dec + b_dec
    L = ||x - x_hat||^2 + lambda * sum_i z_i ||W_dec,i||

The decoder is left unconstrained: the penalty weighs each latent by its decoder norm,
so shrinking one and growing the other buys nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visae.sae.base import ARCHS, SAE
from visae.sae.contract import Codes, SAEOutput


@ARCHS.register("relu")
class ReLUSAE(SAE):
    unit_norm_decoder = False
    decoder_init_norm = 0.1
    sparsity_term = "l1"
    saelens_arch = "standard"

    def encode(self, x_BD: Tensor) -> Codes:
        return Codes(self.d_sae, dense_BS=torch.relu(self.pre_BS(x_BD)))

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        codes = self.encode(x_BD)
        recon_BD = self.decode(codes)
        l1 = (codes.dense_BS.float() * self.W_dec.norm(dim=1)).sum(dim=-1).mean()
        return SAEOutput(recon_BD, codes, {"l1": l1})
