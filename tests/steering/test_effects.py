"""Effect measures (margin, confidence, flips, KL, hierarchy of flips) and the ground-truth lift, on logits
whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visae.data.base import Hierarchy
from visae.steering.effects import effects, margin, shared_level, top_classes
from visae.steering.truth import class_factors, differs_LL, directed

NAMES = ["A1", "A2", "B1", "C1"]
TREE = Hierarchy(levels=["variant", "family", "maker"],
                 parents={"variant": {"A1": "A", "A2": "A", "B1": "B", "C1": "C"}, "family": {"A": "X", "B": "X", "C": "Y"}})  # fmt: skip


def test_margin_is_the_true_logit_minus_the_best_other_and_nan_without_a_label():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    m = margin(logits, torch.tensor([0, 0, -1]))
    assert m[0] == pytest.approx(1.0) and m[1] == pytest.approx(-5.0) and math.isnan(m[2])


def test_flips_kl_and_their_hierarchy_level():
    before = torch.tensor([[4.0, 0, 0, 0], [4.0, 0, 0, 0], [4.0, 0, 0, 0], [4.0, 0, 0, 0]])
    after = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 4.0]])
    eff = effects(before, after, np.array([0, 0, 0, 0]), NAMES, TREE)
    assert eff.flip_B.tolist() == [False, True, True, True]
    assert eff.kl_B[0] == pytest.approx(0.0, abs=1e-12) and (eff.kl_B[1:] > 1).all()
    # A1 -> A2 same family; A1 -> B1 other family, same maker; A1 -> C1 other maker
    assert eff.flip_level_B.tolist() == [-1, 0, 1, 2]
    s = eff.summary()
    assert s["flip_rate"] == 0.75 and s["top1_before"] == 1.0 and s["top1_after"] == 0.25
    assert s["flips_within_family"] == pytest.approx(1 / 3) and s["flips_across_maker"] == pytest.approx(1 / 3)
    p = torch.softmax(before[1].double(), 0)
    q = torch.softmax(after[1].double(), 0)
    assert eff.kl_B[1] == pytest.approx(float((p * (p.log() - q.log())).sum()))
    assert shared_level(TREE, "A1", "A2") == 0 and shared_level(TREE, "B1", "C1") == 2


def test_top_classes_are_sorted_probabilities():
    top = top_classes(torch.tensor([0.0, 3.0, 1.0, 2.0]), NAMES, 3)
    assert [c for c, _ in top] == ["A2", "C1", "B1"] and top[0][1] > top[1][1] > top[2][1]


def test_lift_is_one_for_even_gain_and_large_when_gain_goes_to_the_differing_classes():
    diff = np.array([[False, True, True, False], [True, False, False, True], [True, False, False, True],
                     [False, True, True, False]])  # fmt: skip
    before = torch.tensor([[5.0, 0, 0, 0]] * 4)
    even = torch.tensor([[0.0, 0, 0, 0]] * 4)  # the true class loses; the others gain the same
    r = directed(before, even, np.zeros(4, dtype=np.int64), diff)
    assert r["lift"] == pytest.approx(1.0) and r["chance_share"] == pytest.approx(2 / 3)
    toward = torch.tensor([[0.0, 3.0, 3.0, 0.0]] * 4)  # the gain goes to classes 1 and 2, which differ from 0
    r = directed(before, toward, np.zeros(4, dtype=np.int64), diff)
    assert r["lift"] > 10 and r["directed_share"] > 0.95 and r["flip_share"] == 1.0


def test_the_synthetic_aircraft_parts_map_to_factors_that_split_the_classes():
    class DS:
        spec = "synth-aircraft:/x"
        from visae.data.synth.catalog import class_names as _names

        class_names = _names()

    factors = class_factors(DS())
    names = DS.class_names
    eng = differs_LL(factors, names, "engine")
    i, j = names.index("Strato S1"), names.index("Strato S2")
    assert eng[i, j] and not eng[i, i]  # S1 has two pods, S2 four
    assert differs_LL(factors, names, "gear") is None  # no class factor draws the gear
    assert class_factors(type("Other", (), {"spec": "folder:/x"})()) is None
