"""JumpReLU SAE (Rajamanoharan et al. 2024) with straight-through threshold gradients.

    pre = (x - b_dec) W_enc + b_enc
    z = JumpReLU_theta(pre) = pre * H(pre - theta)
    L = ||x - x_hat||^2 + lambda * ||z||_0,   ||z||_0 = sum_i H(pre_i - theta_i)

H has no useful derivative, so theta learns through the pseudo-derivatives of the paper
with a rectangle kernel K of bandwidth eps:

    d JumpReLU / d theta = -(theta / eps) K((pre - theta) / eps)
    d H(pre - theta) / d theta = -(1 / eps) K((pre - theta) / eps)

theta = exp(log_threshold) stays positive; the saved SAELens ``threshold`` is theta.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd import Function

from visae.sae.base import ARCHS, SAE, SAESpec
from visae.sae.contract import Codes, SAEOutput


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(Function):
    @staticmethod
    def forward(ctx, pre_BS, theta_S, eps):  # type: ignore[override]
        ctx.save_for_backward(pre_BS, theta_S)
        ctx.eps = eps
        return pre_BS * (pre_BS > theta_S)

    @staticmethod
    def backward(ctx, g_BS):  # type: ignore[override]
        pre_BS, theta_S = ctx.saved_tensors
        dpre = g_BS * (pre_BS > theta_S)
        dtheta = -(theta_S / ctx.eps) * _rectangle((pre_BS - theta_S) / ctx.eps) * g_BS
        return dpre, dtheta.sum(dim=0), None


class _Step(Function):
    @staticmethod
    def forward(ctx, pre_BS, theta_S, eps):  # type: ignore[override]
        ctx.save_for_backward(pre_BS, theta_S)
        ctx.eps = eps
        return (pre_BS > theta_S).to(pre_BS.dtype)

    @staticmethod
    def backward(ctx, g_BS):  # type: ignore[override]
        pre_BS, theta_S = ctx.saved_tensors
        dtheta = -(1.0 / ctx.eps) * _rectangle((pre_BS - theta_S) / ctx.eps) * g_BS
        return None, dtheta.sum(dim=0), None


@ARCHS.register("jumprelu")
class JumpReLUSAE(SAE):
    sparsity_term = "l0"
    saelens_arch = "jumprelu"

    def __init__(self, spec: SAESpec):
        super().__init__(spec)
        self.log_threshold = nn.Parameter(torch.full((spec.d_sae,), math.log(spec.threshold_init)))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def encode(self, x_BD: Tensor) -> Codes:
        pre_BS = self.pre_BS(x_BD).float()
        return Codes(self.d_sae, dense_BS=_JumpReLU.apply(pre_BS, self.threshold, self.spec.bandwidth))

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        pre_BS = self.pre_BS(x_BD).float()
        theta_S, eps = self.threshold, self.spec.bandwidth
        codes = Codes(self.d_sae, dense_BS=_JumpReLU.apply(pre_BS, theta_S, eps))
        recon_BD = self.decode(codes)
        l0 = _Step.apply(pre_BS, theta_S, eps).sum(dim=-1).mean()
        return SAEOutput(recon_BD, codes, {"l0": l0})

    def saelens_tensors(self) -> dict[str, Tensor]:
        return {**super().saelens_tensors(), "threshold": self.threshold.detach().clone()}

    @torch.no_grad()
    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        super().load_saelens_tensors(tensors)
        theta = tensors.get("threshold", torch.full((self.d_sae,), self.spec.threshold_init))
        self.log_threshold.copy_(theta.float().clamp_min(1e-12).log())
