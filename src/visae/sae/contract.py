"""The one contract every SAE keeps: what ``forward`` and ``encode`` return.

Top-k families produce sparse codes (``idx_BK`` latent indices, ``val_BK`` their
activations); ReLU and JumpReLU produce dense codes (``dense_BS``). Callers that do not
care use ``codes.dense()``, ``codes.l0_B()`` or ``codes.count_S()`` and never branch on
the architecture.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Codes(NamedTuple):
    """Latent activations of a batch, sparse (top-k families) or dense."""

    d_sae: int
    """Number of latents S (so sparse codes can be densified)."""
    idx_BK: Tensor | None = None
    """Latent index per top-k slot (int64), or None for dense codes."""
    val_BK: Tensor | None = None
    """Activation per top-k slot (0 where a slot was masked out), or None."""
    dense_BS: Tensor | None = None
    """Dense activations, or None for sparse codes."""

    @property
    def is_sparse(self) -> bool:
        return self.idx_BK is not None

    def dense(self) -> Tensor:
        """Codes as a dense [B, S] tensor (scatter of the slots for sparse codes)."""
        if self.dense_BS is not None:
            return self.dense_BS
        assert self.idx_BK is not None and self.val_BK is not None
        out_BS = self.val_BK.new_zeros(self.val_BK.shape[0], self.d_sae)
        return out_BS.scatter_add(1, self.idx_BK, self.val_BK)

    def l0_B(self) -> Tensor:
        """Number of active latents per token."""
        if self.dense_BS is not None:
            return (self.dense_BS != 0).sum(dim=1)
        assert self.val_BK is not None
        return (self.val_BK != 0).sum(dim=1)

    def count_S(self) -> Tensor:
        """How many tokens of the batch fired each latent (int64, shape [S])."""
        if self.dense_BS is not None:
            return (self.dense_BS != 0).sum(dim=0)
        assert self.idx_BK is not None and self.val_BK is not None
        active = (self.val_BK != 0).reshape(-1).to(torch.float32)
        counts = torch.bincount(self.idx_BK.reshape(-1), weights=active, minlength=self.d_sae)
        return counts.round().to(torch.int64)

    def detach(self) -> "Codes":
        return Codes(
            self.d_sae,
            None if self.idx_BK is None else self.idx_BK.detach(),
            None if self.val_BK is None else self.val_BK.detach(),
            None if self.dense_BS is None else self.dense_BS.detach(),
        )


class SAEOutput(NamedTuple):
    """What ``SAE.forward(x_BD)`` returns, for every architecture."""

    recon_BD: Tensor
    """Reconstruction of the input."""
    codes: Codes
    """Latent activations."""
    aux: dict[str, Tensor]
    """Auxiliary loss terms, unweighted (e.g. 'l1', 'l0', 'auxk', 'prefix'); the
    architecture's ``loss`` says how each is weighted."""
