"""Streaming per-latent statistics (firing frequency, mean and max activation, histogram) and
the class-selectivity measure of any population of units.

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


class LatentStats:
    """Running sums for S latents (class statistics live in ``visae.analysis.units``)."""

    def __init__(self, S: int):
        self.S = S
        self.n_tokens = 0
        self.fire_S = torch.zeros(S, dtype=torch.int64)
        self.sum_S = torch.zeros(S, dtype=torch.float64)
        self.max_S = torch.zeros(S)
        self.hist_SX = torch.zeros(S * HIST_BINS, dtype=torch.int64)

    def update(self, codes_TS: torch.Tensor, max_S: torch.Tensor | None = None) -> None:
        """Add the codes of one batch of T tokens (``max_S``: the batch max per latent, when the
        caller has it already)."""
        self.n_tokens += codes_TS.shape[0]
        t_idx, s_idx = (codes_TS > 0).nonzero(as_tuple=True)
        values = codes_TS[t_idx, s_idx]
        self.fire_S += torch.bincount(s_idx, minlength=self.S)
        self.sum_S += torch.bincount(s_idx, weights=values.double(), minlength=self.S)
        if codes_TS.shape[0]:
            self.max_S = torch.maximum(self.max_S, (codes_TS.amax(0) if max_S is None else max_S).float())
        self.hist_SX += torch.bincount(s_idx * HIST_BINS + _log_bin(values), minlength=self.S * HIST_BINS)

    def finish(self) -> LatentSummary:
        fire = self.fire_S.double()
        mean = torch.where(fire > 0, self.sum_S / fire.clamp(min=1), torch.zeros_like(fire))
        return LatentSummary(
            n_tokens=self.n_tokens,
            freq_S=(fire / max(self.n_tokens, 1)).numpy(),
            mean_act_S=mean.numpy(),
            max_act_S=self.max_S.double().numpy(),
            hist_SX=self.hist_SX.view(self.S, HIST_BINS).numpy(),
        )


def _log_bin(values: torch.Tensor) -> torch.Tensor:
    """Index of the log-spaced bin of each positive value, clamped into range."""
    pos = values.float().log10_().sub_(HIST_LOG10_LO).mul_(HIST_BINS / (HIST_LOG10_HI - HIST_LOG10_LO))
    return pos.floor_().clamp_(0, HIST_BINS - 1).long()


SELECTIVE_INDEX = 0.8
"""A unit is class-selective when its selectivity index is at least this (its mean activation on
its top class is at least 9x its mean over the other classes) and it fired on enough images."""


@dataclass
class Selectivity:
    """Class selectivity of C units from class-conditional mean activations (docs/metrics.md)."""

    top_C: np.ndarray
    """Class with the highest mean activation (-1: the unit never fired on a labelled image)."""
    share_C: np.ndarray
    """Prior-corrected share: the top class's mean over the sum of every class's mean (1/L when uniform)."""
    index_C: np.ndarray
    """Selectivity index (m_top - m_rest) / (m_top + m_rest), m_rest the mean over the other classes:
    0 for a unit that fires alike on every class, 1 for one that fires on its top class only."""
    entropy_C: np.ndarray
    """Entropy (nats) of the normalised class means."""


def class_means(class_mass_CL: np.ndarray, class_tokens_L: np.ndarray) -> np.ndarray:
    """Mean activation per token of each class, m_cl = mass_cl / tokens_l (classes without tokens: 0)."""
    tokens_L = np.asarray(class_tokens_L, dtype=np.float64)
    return np.divide(class_mass_CL, tokens_L, out=np.zeros(class_mass_CL.shape), where=tokens_L > 0)


def class_selectivity(class_mass_CL: np.ndarray, class_tokens_L: np.ndarray) -> Selectivity:
    """Which class each unit prefers once class frequency is taken out, and how strongly.

    Only classes with tokens count: a class absent from the analysed images has no mean.
    """
    C = class_mass_CL.shape[0]
    present_L = np.asarray(class_tokens_L) > 0
    if not present_L.any():
        return Selectivity(np.full(C, -1), np.zeros(C), np.zeros(C), np.zeros(C))
    m_CL = class_means(class_mass_CL, class_tokens_L)[:, present_L]
    L = m_CL.shape[1]
    total_C = m_CL.sum(1)
    p_CL = np.divide(m_CL, total_C[:, None], out=np.zeros_like(m_CL), where=total_C[:, None] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy_C = -np.where(p_CL > 0, p_CL * np.log(p_CL), 0.0).sum(1)
    top = p_CL.argmax(1)
    m_top = m_CL[np.arange(C), top]
    m_rest = (total_C - m_top) / max(L - 1, 1)
    index_C = np.divide(m_top - m_rest, m_top + m_rest, out=np.zeros(C), where=(m_top + m_rest > 0) & (L > 1))
    fired = total_C > 0
    top_C = np.where(fired, np.flatnonzero(present_L)[top], -1)
    return Selectivity(top_C, np.where(fired, p_CL[np.arange(C), top], 0.0), index_C, entropy_C)


def selective(sel: Selectivity, n_images_C: np.ndarray, min_images: int, threshold: float = SELECTIVE_INDEX) -> np.ndarray:
    """Units that are class-selective: index >= threshold and fired on at least ``min_images`` images."""
    return (sel.top_C >= 0) & (sel.index_C >= threshold) & (np.asarray(n_images_C) >= min_images)
