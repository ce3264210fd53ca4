"""BatchTopK SAE (Bussmann et al. 2024): top ``k * B`` activations over the whole batch.

Training:   z = BatchTopK_{kB}(ReLU((x - b_dec) W_enc + b_enc))   (k per token on average)
Inference:  z = JumpReLU_theta(pre) = pre * [pre > theta]

``theta`` is learnt during training as a running average of the smallest activation the
batch selection keeps (an exponential average with Adam's bias correction, so the first
batches, taken while the encoder is still random, do not linger in it), and saved as the
SAELens ``threshold``; a saved BatchTopK SAE is a JumpReLU SAE to SAELens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visae.sae import kernels
from visae.sae.base import ARCHS, SAE, SAESpec
from visae.sae.contract import Codes, SAEOutput
from visae.sae.topk import auxk_loss

THRESHOLD_EMA = 0.99
"""Weight of the running threshold against each batch's smallest kept activation."""


@ARCHS.register("batchtopk")
class BatchTopKSAE(SAE):
    needs_k = True
    saelens_arch = "jumprelu"

    def __init__(self, spec: SAESpec):
        super().__init__(spec)
        self.register_buffer("threshold", torch.full((spec.d_sae,), -1.0))
        """Inference threshold (one value broadcast over latents; -1 until trained)."""
        self.register_buffer("threshold_ema", torch.zeros(2))
        """(sum of beta^(t-i) (1 - beta) m_i, number of updates t): theta = sum / (1 - beta^t)."""

    dp_world = None
    """The data-parallel ``visae.distributed.World`` this SAE trains in (set by the trainer; None: one
    process): its batch selection is then over the global batch."""

    def encode(self, x_BD: Tensor) -> Codes:
        pre_BS = self.pre_BS(x_BD)
        theta = self.threshold.clamp_min(0)
        return Codes(self.d_sae, dense_BS=torch.relu(pre_BS) * (pre_BS > theta))

    def batch_codes(self, x_BD: Tensor) -> Codes:
        """Training codes: the batch-level selection (and a threshold update)."""
        xc_BD = x_BD - self.b_dec.detach()
        sel, keep_BK, min_kept = kernels.select_batch_topk(xc_BD, self.W_enc, self.b_enc, self.spec.k,
                                                         world=self.dp_world)
        val_BK = torch.relu(kernels.encoder_values(x_BD, self.b_dec, self.W_enc, self.b_enc, sel))
        self._update_threshold(min_kept)
        return Codes(self.d_sae, sel.idx_BK, val_BK * keep_BK)

    @torch.no_grad()
    def _update_threshold(self, min_kept: Tensor) -> None:
        if not bool(min_kept > 0):
            return
        ema = self.threshold_ema
        ema[0] = THRESHOLD_EMA * ema[0] + (1 - THRESHOLD_EMA) * min_kept
        ema[1] += 1
        self.threshold.fill_(float(ema[0] / (1 - THRESHOLD_EMA ** ema[1])))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # checkpoints written before the bias-corrected average: restart the average from the saved threshold
        key = prefix + "threshold_ema"
        if key not in state_dict and prefix + "threshold" in state_dict:
            theta = float(state_dict[prefix + "threshold"].max())
            state_dict[key] = torch.tensor([theta * (1 - THRESHOLD_EMA), 1.0]) if theta > 0 else torch.zeros(2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        codes = self.batch_codes(x_BD) if self.training else self.encode(x_BD)
        recon_BD = self.decode(codes)
        aux = {}
        if self.training and dead_S is not None and bool(dead_S.any()):
            aux["auxk"] = auxk_loss(self, x_BD, recon_BD, dead_S)
        return SAEOutput(recon_BD, codes, aux)

    def saelens_tensors(self) -> dict[str, Tensor]:
        return {**super().saelens_tensors(), "threshold": self.threshold.clamp_min(0).clone()}

    @torch.no_grad()
    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        super().load_saelens_tensors(tensors)
        if "threshold" in tensors:
            self.threshold.copy_(tensors["threshold"].to(self.threshold.dtype))
