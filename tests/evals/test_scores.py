"""The shared statistics (visae.evals.scores): ranks with ties, AUROC, average precision and Spearman by hand and
against brute force, and the selection/scoring split's stratification and seeding."""

from __future__ import annotations

import numpy as np
import pytest

from visae.evals import scores


# ------------------------------------------------------------------ ranks


def test_average_ranks_ties():
    assert scores.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert scores.average_ranks(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert scores.average_ranks(np.zeros(3)).tolist() == [2.0, 2.0, 2.0]
    assert scores.average_ranks(np.array([5, 5, 1], dtype=np.int64)).dtype == np.float64
    assert scores.average_ranks(np.zeros(0)).shape == (0,)


# ------------------------------------------------------------------ AUROC


def test_auroc_by_hand():
    assert scores.auroc(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 1])) == pytest.approx(0.5)
    assert scores.auroc(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 0])) == pytest.approx(0.75)  # a tie counts one half
    # pairs (positive > negative) + ½ ties, negatives 0 1 2 3, positives 2 3 4 5: 2½ + 3½ + 4 + 4 = 14 of 16
    x = np.array([0.0, 1, 2, 3, 2, 3, 4, 5])
    assert scores.auroc(x, np.arange(8) >= 4) == pytest.approx(14 / 16)
    assert scores.auroc(x, np.arange(8) < 4) == pytest.approx(2 / 16)  # classes swapped: 1 − AUROC
    assert scores.auroc(np.array([1.0, 2.0]), np.array([1, 1])) is None  # no negatives
    assert scores.auroc(np.array([1.0, 2.0]), np.array([False, False])) is None  # no positives


def test_auroc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(6, 60))
        x = rng.integers(0, 4, n).astype(np.float32)  # many ties
        y = rng.random(n) < 0.4
        y[0], y[1] = True, False
        pos, neg = x[y], x[~y]
        pairs = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
        assert scores.auroc(x, y) == pytest.approx(pairs)


# ------------------------------------------------------------------ average precision


def _ap_reference(x, y):
    """AP straight from the definition: a loop over the distinct thresholds, high to low."""
    x, y = np.asarray(x, float), np.asarray(y) > 0
    ap, prev_r = 0.0, 0.0
    for th in sorted(set(x), reverse=True):
        sel = x >= th
        tp = y[sel].sum()
        r = tp / y.sum()
        ap += (r - prev_r) * tp / sel.sum()
        prev_r = r
    return ap


def test_average_precision_by_hand():
    ap = scores.ap
    assert ap(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 1])) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert ap(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(5 / 6)  # P 1 at rank 1, 2/3 at rank 3
    # ties form one threshold: precision 1/2 at recall 1/2, then 2/4 at recall 1, whatever the order inside a tie
    assert ap(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert ap(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    assert ap(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 1])) == pytest.approx(7 / 12)  # R ½ at P ½, then R 1 at P 2/3
    assert ap(np.array([0.0, 5.0, 5.0, 1.0]), np.array([0, 1, 1, 0])) == pytest.approx(1.0)
    assert ap(np.array([3.0, 2.0, 1.0]), np.array([0, 0, 1])) == pytest.approx(1 / 3)  # worst ranking
    assert ap(np.zeros(10), np.arange(10) < 3) == pytest.approx(0.3)  # a constant score: the positive rate
    assert np.isnan(ap(np.array([1.0, 2.0]), np.array([0, 0])))  # no positives: undefined


def test_average_precision_matches_the_threshold_loop(monkeypatch):
    monkeypatch.setattr(scores, "CHUNK_ELEMS", 50)  # several chunks of units
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(3, 40))
        x_NS = rng.integers(0, 4, (n, 5)).astype(np.float32)  # many ties
        y_NC = rng.random((n, 3)) < 0.4
        y_NC[0, :2] = True
        y_NC[:, 2] = False  # a label without positives
        ap_CS = scores.average_precision(x_NS, y_NC)
        assert ap_CS.shape == (3, 5) and ap_CS.dtype == np.float64
        want = [[_ap_reference(x_NS[:, s], y_NC[:, c]) for s in range(5)] for c in range(2)]
        np.testing.assert_allclose(ap_CS[:2], want, rtol=0, atol=1e-12)
        assert np.isnan(ap_CS[2]).all()
    # 0/1 float labels and integer scores are read the same as bool labels and float scores
    x, y = rng.integers(0, 3, (20, 4)), rng.random((20, 2)) < 0.5
    np.testing.assert_array_equal(scores.average_precision(x, y.astype(float)), scores.average_precision(x.astype(float), y))


# ------------------------------------------------------------------ Spearman


def test_spearman_with_ties_by_hand():
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): centred products 4.5, variances 4.5 and 5
    assert scores.spearman(np.array([1, 2, 2, 3.0]), np.array([1, 3, 2, 4.0])) == pytest.approx(4.5 / np.sqrt(22.5))
    assert scores.spearman(np.array([1, 2, 3.0]), np.array([3, 2, 1.0])) == pytest.approx(-1.0)
    assert scores.spearman(np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8])) == pytest.approx(1.0)
    assert scores.spearman(np.array([1, 1, 1.0]), np.array([1, 2, 3.0])) is None  # constant: undefined
    assert scores.spearman(np.array([1, 2, 3.0]), np.zeros(3)) is None
    stats = pytest.importorskip("scipy.stats")
    x, y = np.random.default_rng(0).integers(0, 4, (2, 50)).astype(float)
    assert scores.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


# ------------------------------------------------------------------ the split


def test_split_is_stratified_and_seeded():
    label_B = np.repeat(np.arange(5), 7)
    a = scores.split_halves(label_B, 0)
    assert a.dtype == bool and a.shape == (35,)
    np.testing.assert_array_equal(a, scores.split_halves(label_B, 0))
    assert not np.array_equal(a, scores.split_halves(label_B, 1))
    for lab in range(5):
        assert a[label_B == lab].sum() in (3, 4)
    assert a.sum() == 18  # ⌈35/2⌉
    uneven = np.repeat(np.arange(5), [7, 8, 4, 1, 10])
    sel = scores.split_halves(uneven, 3)
    for c in range(5):
        n, k = (uneven == c).sum(), sel[uneven == c].sum()
        assert abs(k - (n - k)) <= 1
    assert sel.sum() == 15


def test_split_unlabelled_images_are_a_stratum():
    label_B = np.r_[np.full(9, -1), np.repeat([0, 1], 6)]
    for seed in range(5):
        sel = scores.split_halves(label_B, seed)
        assert sel[label_B == -1].sum() in (4, 5) and sel[label_B == 0].sum() == 3 and sel[label_B == 1].sum() == 3


def test_split_follows_its_definition_and_is_uniform_within_a_label():
    label_B = np.array([2, 0, 1, 0, 2, 2, 0, -1, 1, 0])
    perm = np.random.default_rng(7).permutation(10)
    order = sorted(perm, key=lambda i: label_B[i])  # stable: π's order within a label
    want = np.zeros(10, bool)
    want[order[::2]] = True
    np.testing.assert_array_equal(scores.split_halves(label_B, 7), want)
    label_B = np.repeat(np.arange(4), 6)
    freq_B = np.mean([scores.split_halves(label_B, s) for s in range(400)], 0)
    assert np.abs(freq_B - 0.5).max() < 0.1  # every image equally likely in either half
