"""What every SAE shares: the spec, the four weights, decode, loss, decoder constraints.

Every architecture has the same parameters as SAELens (``W_enc`` [D, S], ``b_enc`` [S],
``W_dec`` [S, D], ``b_dec`` [D]) and encodes ``x - b_dec``:

    pre = (x - b_dec) @ W_enc + b_enc        z = sigma(pre)        x_hat = z @ W_dec + b_dec

and differs only in the activation ``sigma`` and its auxiliary loss terms. Architectures
register themselves in ``ARCHS`` under the name used by ``--arch``.

``W_enc`` is stored column-major ([S, D] in memory, shape [D, S]): the sparse encoder
gradient is built per latent, and lands in that layout without a transpose.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from visae.errors import VisaeError
from visae.registry import Registry
from visae.sae import kernels
from visae.sae.contract import Codes, SAEOutput
from visae.sae.spec import SAESpec


ARCHS: Registry[type["SAE"]] = Registry("SAE architecture")


class SAE(nn.Module):
    """Base of every architecture; subclasses define ``encode`` and ``forward``."""

    needs_k: ClassVar[bool] = False
    unit_norm_decoder: ClassVar[bool] = True
    """Keep decoder rows at unit norm (and remove the gradient parallel to them)."""
    decoder_init_norm: ClassVar[float] = 1.0
    sparsity_term: ClassVar[str | None] = None
    """Name of the aux term that the sparsity coefficient (with warmup) weighs."""
    saelens_arch: ClassVar[str] = "standard"
    """The SAELens inference architecture that computes the same function."""

    def __init__(self, spec: SAESpec):
        super().__init__()
        self.spec = spec
        self.meta: dict = {}
        """visae metadata (backbone, layer, layout, store statistics); saved in cfg.json."""
        D, S = spec.d_in, spec.d_sae
        W_dec_SD = torch.randn(S, D)
        W_dec_SD *= self.decoder_init_norm / W_dec_SD.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec_SD)
        self.W_enc = nn.Parameter(W_dec_SD.clone().t())  # decoder transpose, column-major
        self.b_enc = nn.Parameter(torch.zeros(S))
        self.b_dec = nn.Parameter(torch.zeros(D))

    @property
    def d_in(self) -> int:
        return self.spec.d_in

    @property
    def d_sae(self) -> int:
        return self.spec.d_sae

    def pre_BS(self, x_BD: Tensor) -> Tensor:
        """Dense pre-activations ``(x - b_dec) @ W_enc + b_enc``."""
        return (x_BD - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x_BD: Tensor) -> Codes:
        """Latent codes of a batch (inference semantics)."""
        raise NotImplementedError

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        """Reconstruction, codes and auxiliary loss terms. ``dead_S`` marks latents that
        have not fired for a while (top-k families add the AuxK term for them)."""
        raise NotImplementedError

    def decode(self, codes: Codes) -> Tensor:
        """``x_hat = z @ W_dec + b_dec`` (gather-decode for sparse codes)."""
        if codes.idx_BK is not None:
            return kernels.sparse_decode(codes.idx_BK, codes.val_BK, self.W_dec) + self.b_dec
        return codes.dense_BS.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def loss(
        self, x_BD: Tensor, out: SAEOutput, coeffs: dict[str, float] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``||x - x_hat||^2`` (summed over D, mean over tokens) + weighted aux terms.

        ``coeffs`` maps an aux term's name to its weight (default 1).
        """
        coeffs = coeffs or {}
        # sum over D, mean over tokens; one fused op (and one in the backward) on [B, D]
        mse = nn.functional.mse_loss(out.recon_BD.float(), x_BD.float(), reduction="sum") / x_BD.shape[0]
        total = mse
        for name, term in out.aux.items():
            total = total + coeffs.get(name, 1.0) * term
        return total, {"mse": mse, **out.aux}

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Project decoder rows back to unit norm (architectures that ask for it)."""
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of each decoder row's gradient along the row itself."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            g, W = self.W_dec.grad, self.W_dec
            along_S11 = torch.bmm(g.unsqueeze(1), W.unsqueeze(2))  # (g . w) per row, no [S, D] temporary
            g.addcmul_(along_S11.view(-1, 1).expand_as(W), W, value=-1.0)  # g -= (g . w) w

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        """Scale every gradient so that their total norm is at most ``max_norm``; returns the norm before."""
        return torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)

    @torch.no_grad()
    def fold_normalization(self, mean_D: Tensor, scale: float) -> None:
        """Make an SAE trained on ``(x - mean) * scale`` take raw ``x``.

        ``W_enc <- scale W_enc``, ``W_dec <- W_dec / scale``, ``b_dec <- b_dec / scale + mean``:
        codes are unchanged, reconstructions come out in raw units.
        """
        self.W_enc *= scale
        self.W_dec /= scale
        self.b_dec.copy_(self.b_dec / scale + mean_D.to(self.b_dec))

    # ---- file formats: the SAELens tensors (extra ones per architecture) ----

    def saelens_tensors(self) -> dict[str, Tensor]:
        return {
            "W_enc": self.W_enc.detach().contiguous(),
            "b_enc": self.b_enc.detach().clone(),
            "W_dec": self.W_dec.detach().clone(),
            "b_dec": self.b_dec.detach().clone(),
        }

    @torch.no_grad()
    def load_saelens_tensors(self, tensors: dict[str, Tensor]) -> None:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            param = getattr(self, name)
            t = tensors.get(name)
            if t is None or tuple(t.shape) != tuple(param.shape):
                got = "missing" if t is None else f"shape {tuple(t.shape)}"
                raise VisaeError(
                    f"SAE weight '{name}' is {got}, expected {tuple(param.shape)}",
                    "the weights file does not match its cfg.json",
                )
            param.copy_(t.to(param.dtype))


def create_sae(spec: SAESpec) -> SAE:
    """Build a freshly initialised SAE of ``spec.arch``."""
    return ARCHS.get(spec.arch)(spec)


def check_matches(sae: SAE, d: int, what: str = "the store") -> None:
    """Refuse an SAE whose input dimension is not ``d``."""
    if sae.d_in != d:
        raise VisaeError(
            f"the SAE takes d_in={sae.d_in} activations but {what} holds d={d}",
            "use an SAE trained on this backbone layer, or the store it was trained on",
        )


# Each import registers its architecture in ARCHS (after everything above is defined; they import this module).
from visae.sae import relu as _relu  # noqa: E402,F401
from visae.sae import topk as _topk  # noqa: E402,F401
from visae.sae import batchtopk as _batchtopk  # noqa: E402,F401
from visae.sae import jumprelu as _jumprelu  # noqa: E402,F401
from visae.sae import matryoshka as _matryoshka  # noqa: E402,F401
