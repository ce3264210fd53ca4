"""Streaming per-latent statistics: firing frequency, mean and max activation, histogram, class mass.

Everything here is a running sum or max updated one batch at a time, so memory is flat in
the size of the store. The activation histogram uses fixed log-spaced bins (``HIST_EDGES``)
so batches can be added without knowing the range in advance; values outside the range go
to the first or last bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

HIST_LOG10_LO, HIST_LOG10_HI, HIST_BINS = -4.0, 4.0, 48
HIST_EDGES = np.logspace(HIST_LOG10_LO, HIST_LOG10_HI, HIST_BINS + 1)
"""Bin edges of the activation histogram (positive activations only), shared by every latent."""


@dataclass
class LatentSummary:
    """The finished statistics of S latents over n_tokens tokens."""

    n_tokens: int
    freq_S: np.ndarray
    """Share of tokens where the latent is > 0."""
    mean_act_S: np.ndarray
    """Mean activation over the tokens where it fires (0 when it never fires)."""
    max_act_S: np.ndarray
    hist_SX: np.ndarray
    """Counts of positive activations per log-spaced bin (X = HIST_BINS)."""
    class_mass_SL: np.ndarray
    """Summed activation per class of the image the token came from."""


class LatentStats:
    """Running sums for S latents and L classes."""

    def __init__(self, S: int, L: int):
        self.S, self.L = S, L
        self.n_tokens = 0
        self.fire_S = torch.zeros(S, dtype=torch.int64)
        self.sum_S = torch.zeros(S, dtype=torch.float64)
        self.max_S = torch.zeros(S)
        self.hist_SX = torch.zeros(S * HIST_BINS, dtype=torch.int64)
        self.class_mass_LS = torch.zeros(max(L, 1), S, dtype=torch.float64)

    def update(self, codes_TS: torch.Tensor, image_sum_BS: torch.Tensor, label_B: torch.Tensor,
               max_S: torch.Tensor | None = None) -> None:
        """Add one batch: the codes of its T tokens and the per-image sums with their labels
        (``max_S``: the batch max per latent, when the caller has it already)."""
        self.n_tokens += codes_TS.shape[0]
        t_idx, s_idx = (codes_TS > 0).nonzero(as_tuple=True)
        values = codes_TS[t_idx, s_idx]
        self.fire_S += torch.bincount(s_idx, minlength=self.S)
        self.sum_S += torch.bincount(s_idx, weights=values.double(), minlength=self.S)
        if codes_TS.shape[0]:
            self.max_S = torch.maximum(self.max_S, (codes_TS.amax(0) if max_S is None else max_S).float())
        self.hist_SX += torch.bincount(s_idx * HIST_BINS + _log_bin(values), minlength=self.S * HIST_BINS)
        known = label_B >= 0
        if self.L and known.any():
            self.class_mass_LS.index_add_(0, label_B[known], image_sum_BS[known].double())

    def finish(self) -> LatentSummary:
        fire = self.fire_S.double()
        mean = torch.where(fire > 0, self.sum_S / fire.clamp(min=1), torch.zeros_like(fire))
        return LatentSummary(
            n_tokens=self.n_tokens,
            freq_S=(fire / max(self.n_tokens, 1)).numpy(),
            mean_act_S=mean.numpy(),
            max_act_S=self.max_S.double().numpy(),
            hist_SX=self.hist_SX.view(self.S, HIST_BINS).numpy(),
            class_mass_SL=self.class_mass_LS.T[:, : self.L].numpy(),
        )


def _log_bin(values: torch.Tensor) -> torch.Tensor:
    """Index of the log-spaced bin of each positive value, clamped into range."""
    pos = values.float().log10_().sub_(HIST_LOG10_LO).mul_(HIST_BINS / (HIST_LOG10_HI - HIST_LOG10_LO))
    return pos.floor_().clamp_(0, HIST_BINS - 1).long()


def class_selectivity(class_mass_SL: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top_class_S, top_share_S, entropy_S): the class with most activation mass, its share,
    and the entropy (nats) of the mass distribution. A latent with no mass gets class -1."""
    total_S = class_mass_SL.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_SL = np.where(total_S[:, None] > 0, class_mass_SL / total_S[:, None], 0.0)
        entropy_S = -(np.where(p_SL > 0, p_SL * np.log(p_SL), 0.0)).sum(1)
    if class_mass_SL.shape[1] == 0:
        return np.full(len(total_S), -1), np.zeros(len(total_S)), np.zeros(len(total_S))
    top_S = p_SL.argmax(1)
    share_S = p_SL[np.arange(len(top_S)), top_S]
    top_S = np.where(total_S > 0, top_S, -1)
    return top_S, share_S, entropy_S
