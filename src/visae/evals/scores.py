"""The statistics every eval family shares: ranks, AUROC, average precision, Spearman, and the selection/scoring split.

concepts, probing, ood, ontology and stability all compute these here (numpy, float64 results), so one
definition holds for every number in RUN/eval/*.json (docs/metrics.md).

Average ranks. ``average_ranks(x)``: x_i's 1-based rank among x_1..x_N in ascending order; the k values of a
tie occupying positions a+1..a+k all get their mean a + (k+1)/2.

AUROC (Mann–Whitney U). Scores x_N, positives P (n₁ of them), negatives Q (n₀), r = average_ranks(x)::

    AUROC = (Σ_{i∈P} r_i − n₁(n₁+1)/2) / (n₁ n₀) = P(x_p > x_q) + ½ P(x_p = x_q)   (p ∈ P, q ∈ Q uniform)

None when n₁ = 0 or n₀ = 0. Chance 0.5.

Average precision (step-wise; tied scores form one threshold, as sklearn's ``average_precision_score``).
At a threshold t, K(t) = #{i : x_i ≥ t} and TP(t) = #{i ∈ P : x_i ≥ t}; over the distinct values t_1 > t_2 > ...
of x, with recall R_n = TP(t_n)/n₁ (R_0 = 0) and precision Prec_n = TP(t_n)/K(t_n)::

    AP = Σ_n (R_n − R_{n−1}) Prec_n = (1/n₁) Σ_{i∈P} TP(x_i) / K(x_i)

A constant score has AP = n₁/N, the positive rate (chance); NaN without positives (undefined).

Spearman. ρ(x, y) = the Pearson correlation of average_ranks(x) and average_ranks(y); None when either is
constant (its ranks have no variance).

The split (``split_halves``): the held-out images are split once, by image, into a selection half (where
units, counterparts and probe weights are chosen) and a scoring half (where every reported number is
measured). π = ``np.random.default_rng(seed).permutation(B)``; the images are ordered by label, ascending, and
within a label by their place in π (a stable sort of π by label); the images at even places 0, 2, 4, ... of
that order are the selection half. So of each label's k images (unlabelled images, -1, form one label of their
own) a uniformly random ⌈k/2⌉ are selection images when an even number of images has a smaller label, else
⌊k/2⌋; the selection half holds ⌈B/2⌉ of the B images. Every family calls it with
the held-out labels and the run's seed, so an image is in the same half in every family.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK_ELEMS = 1 << 21
"""Scores (samples x units) ``average_precision`` sorts at once: its temporaries stay near 100 MB however many
units (20k tokens: 104 units a chunk)."""


def average_ranks(x_N: np.ndarray) -> np.ndarray:
    """``rank_N`` (float64): 1-based ranks of ``x_N`` in ascending order, tied values given their average rank."""
    x_N = np.asarray(x_N)
    if x_N.ndim != 1:
        raise ValueError(f"average_ranks takes a 1-d array, not shape {x_N.shape}")
    rank_N = np.empty(len(x_N), dtype=np.float64)
    if not len(x_N):
        return rank_N
    order_N = np.argsort(x_N, kind="stable")
    xs_N = x_N[order_N]
    new_N = np.r_[True, xs_N[1:] != xs_N[:-1]]  # the first of each run of tied values
    first_R = np.flatnonzero(new_N)
    count_R = np.diff(np.r_[first_R, len(x_N)])
    rank_N[order_N] = (first_R + (count_R + 1) / 2.0)[np.cumsum(new_N) - 1]
    return rank_N


def auroc(score_N: np.ndarray, positive_N: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative) + ½ P(tie), the Mann–Whitney U over n₁ n₀; None when there
    are no positives or no negatives."""
    pos_N = np.asarray(positive_N).astype(bool)
    n1 = int(pos_N.sum())
    n0 = len(pos_N) - n1
    if not n1 or not n0:
        return None
    rank_N = average_ranks(np.asarray(score_N))
    return float((rank_N[pos_N].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision(x_NS: np.ndarray, y_NC: np.ndarray) -> np.ndarray:
    """``ap_CS`` (float64): the AP of every column s of ``x_NS`` as the score for every label column c of ``y_NC``
    (positive where > 0); NaN for a label without positives. Scores must be finite.

    Per unit, AP = (1/n₁) Σ_{i positive} TP(x_i) / K(x_i) (module docstring): one descending sort of all samples
    per unit gives K, one sort of the positives per label gives TP, the end of each run of tied values counting
    the whole tie. Units are rows of the sorted arrays (sorts along memory), ``CHUNK_ELEMS`` scores at a time."""
    x_NS = np.asarray(x_NS)
    if x_NS.dtype.kind != "f":
        x_NS = x_NS.astype(np.float64)
    y_NC = np.asarray(y_NC) > 0
    if x_NS.ndim != 2 or y_NC.ndim != 2 or len(x_NS) != len(y_NC):
        raise ValueError(f"average_precision takes x_NS and y_NC with the same N, not {x_NS.shape} and {y_NC.shape}")
    N, S = x_NS.shape
    ap_CS = np.full((y_NC.shape[1], S), np.nan)
    labels = np.flatnonzero(y_NC.any(0))
    step = max(1, CHUNK_ELEMS // max(N, 1))
    for a in range(0, S if len(labels) else 0, step):
        x_sN = np.ascontiguousarray(x_NS[:, a : a + step].T)
        order_sN = np.argsort(-x_sN, axis=1)  # order within a tie is irrelevant
        k_sN = np.empty(x_sN.shape, dtype=np.float64)  # K(x_i): samples scoring at least sample i
        np.put_along_axis(k_sN, order_sN, _run_end(np.take_along_axis(x_sN, order_sN, 1)) + 1.0, 1)
        del order_sN
        for c in labels:
            p_P = np.flatnonzero(y_NC[:, c])
            xp_sP = x_sN[:, p_P]
            order_sP = np.argsort(-xp_sP, axis=1)
            tp_sP = _run_end(np.take_along_axis(xp_sP, order_sP, 1)) + 1.0  # TP(x_i): positives scoring at least it
            ap_CS[c, a : a + step] = (tp_sP / np.take_along_axis(k_sN[:, p_P], order_sP, 1)).mean(1)
    return ap_CS


def _run_end(xs_sN: np.ndarray) -> np.ndarray:
    """Per row sorted descending: the position of the last element of each element's run of tied values."""
    n = xs_sN.shape[1]
    last_sN = np.ones(xs_sN.shape, dtype=bool)
    last_sN[:, :-1] = xs_sN[:, 1:] != xs_sN[:, :-1]
    end_sN = np.where(last_sN, np.arange(n), n)
    return np.minimum.accumulate(end_sN[:, ::-1], axis=1)[:, ::-1]


def ap(x_N: np.ndarray, y_N: np.ndarray) -> float:
    """The AP of one score vector for one label vector (``average_precision`` of one column)."""
    return float(average_precision(np.asarray(x_N)[:, None], np.asarray(y_N)[:, None])[0, 0])


def spearman(x_N: np.ndarray, y_N: np.ndarray) -> float | None:
    """Spearman's ρ: the Pearson correlation of the average ranks; None when either side is constant."""
    rx_N, ry_N = average_ranks(x_N), average_ranks(y_N)
    if len(rx_N) != len(ry_N):
        raise ValueError(f"spearman takes two arrays of one length, not {len(rx_N)} and {len(ry_N)}")
    rx_N, ry_N = rx_N - rx_N.mean(), ry_N - ry_N.mean()
    den = math.sqrt(float(rx_N @ rx_N) * float(ry_N @ ry_N))
    return float(rx_N @ ry_N / den) if den > 0 else None


def split_halves(label_B: np.ndarray, seed: int) -> np.ndarray:
    """``sel_B`` (bool): True for the selection half, False for the scoring half of the B images.

    π = ``np.random.default_rng(seed).permutation(B)``; sorting π stably by label orders the images by label,
    and within a label randomly; the images at even places of that order are selected. Each label's k images
    (-1, unlabelled, is a label like the others) give ⌈k/2⌉ or ⌊k/2⌋ selection images, a uniformly random subset
    of that size; the selection half holds ⌈B/2⌉ images. The same (labels, seed) give the same split."""
    label_B = np.asarray(label_B)
    perm_B = np.random.default_rng(seed).permutation(len(label_B))
    order_B = perm_B[np.argsort(label_B[perm_B], kind="stable")]
    sel_B = np.zeros(len(label_B), dtype=bool)
    sel_B[order_B[::2]] = True
    return sel_B
