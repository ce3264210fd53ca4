"""Ontology recovery: LCA heights and exact nodes by hand, the split's dropped classes, planted units, the real
small run (Spearman and the split itself: test_scores.py)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from visae.data.base import Hierarchy
from visae.evals import ontology
from visae.evals.data import EvalSet, Missing
from visae.evals.scores import split_halves

# a1 a2 -> A, b1 -> B (A, B -> X); c1 c2 -> C (-> Y); root above X, Y
NAMES = ["a1", "a2", "b1", "c1", "c2"]
TREE = Hierarchy(["variant", "family", "maker"], {"variant": {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C"},
                                                  "family": {"A": "X", "B": "X", "C": "Y"}})  # fmt: skip


def anc() -> np.ndarray:
    anc_LC, keep_C, _ = ontology.tree_of_classes(TREE, NAMES, np.repeat(np.arange(5), 2))
    assert keep_C.all()
    return anc_LC


def test_lca_heights_and_pairs_by_hand():
    sets = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 0, 1, 0], [0, 0, 0, 1, 1], [0, 0, 1, 0, 0]], bool)
    assert ontology.lca_heights(sets, anc()).tolist() == [0, 1, 2, 3, 1, 0]
    expected = np.array([[0, 1, 2, 3, 3], [1, 0, 2, 3, 3], [2, 2, 0, 3, 3], [3, 3, 3, 0, 1], [3, 3, 3, 1, 0]], float)
    np.testing.assert_array_equal(ontology.pair_heights(anc()), expected)


def test_exact_nodes_and_chance_by_hand():
    sets = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [1, 0, 0, 1, 0]], bool)  # family A; b1 = variant b1 = family B; root
    np.testing.assert_allclose(ontology.exact_nodes(sets, anc()), [1 / 5, 2 / 3, 0.0])
    # k = 2 of 5 (10 sets): within a family 2 (a1a2, c1c2), within a maker 4 (+ a1b1, a2b1), else root
    np.testing.assert_allclose(ontology.height_chance(2, anc()), [0.0, 0.2, 0.2, 0.6])
    np.testing.assert_allclose(ontology.height_chance(1, anc()), [1.0, 0.0, 0.0, 0.0])


def test_split_is_the_shared_one_without_dropped_classes():
    label_B = np.array([0] * 6 + [1] * 5 + [2] * 1 + [-1] * 3)
    keep = np.array([True, True, False])
    sel, score, y = ontology.split_images(label_B, keep, seed=3)
    assert not (sel & score).any() and (y[sel | score] >= 0).all() and (y[label_B == 2] == -1).all()
    assert not (sel | score)[label_B == -1].any() and not (sel | score)[label_B == 2].any()
    half = split_halves(label_B, 3)
    assert (sel == half & (y >= 0)).all() and (score == ~half & (y >= 0)).all()
    assert y[label_B == 1].tolist() == [1] * 5 and sorted([sel[label_B == 1].sum(), score[label_B == 1].sum()]) == [2, 3]


def fake_ctx(codes_BS: dict[str, np.ndarray], per_class: int, names=NAMES, tree=TREE, options=None):
    """Two tokens per image; the unit's value on the first token, 0 on the second (so the image max is it)."""
    n = len(names)
    label_B = np.repeat(np.arange(n), per_class)
    B = len(label_B)
    es = EvalSet(torch.zeros(2 * B, 4), np.repeat(np.arange(B), 2), np.tile([0, 1], B), label_B, [str(i) for i in range(B)],
                 np.arange(B), list(names), None, "val", "fake", hierarchy=tree)  # fmt: skip

    def codes(name: str) -> torch.Tensor:
        c = codes_BS.get(name, codes_BS["sae"])
        out = np.zeros((2 * B, c.shape[1]), np.float32)
        out[0::2] = c
        return torch.from_numpy(out)

    return types.SimpleNamespace(heldout=es, codes=codes, seed=0, options=options or {})


def node_units(per_class: int) -> np.ndarray:
    """One unit per node of the tree (5 variants, 3 families, 2 makers), 1 on that node's images."""
    anc_LC = anc()
    cols = [anc_LC[h] == v for h in range(3) for v in np.unique(anc_LC[h])]
    return np.repeat(np.stack(cols, 1).astype(np.float32), per_class, axis=0)


def test_planted_node_units():
    rng = np.random.default_rng(0)
    sae = node_units(12)
    noise = rng.random(sae.shape).astype(np.float32)
    res = ontology.evaluate(fake_ctx({"sae": sae, "random_sae": noise}, 12))
    s = res["by"]["sae"]
    assert res["nodes"] == {"variant": 5, "family": 3, "maker": 2}
    assert res["split"]["selection_images"] == 30 and res["split"]["scoring_images"] == 30
    # maker X covers 3 of 5 classes (> half): not selective; all other 9 node units are
    assert s["selective_units"] == 9 and s["of"] == 10 and s["holds_on_scoring"] == 1.0
    assert s["exact_nodes"] == {"variant": 1.0, "family": 1.0, "maker": 0.5}
    # heights: 5 variants + family B ({b1}) at 0; families A, C and maker Y (= {c1, c2}, whose LCA is C) at 1
    assert s["heights"] == pytest.approx({"0": 6 / 9, "1": 3 / 9, "2": 0.0, "3": 0.0})
    # classes sharing a family share 2 of 3 units, a maker 1 of 3, else none: distance is monotone in the tree
    assert s["spearman"] == pytest.approx(1.0)
    assert abs(res["permutation_spearman"]["sae"]["mean"]) < 0.5
    r = res["by"]["random_sae"]
    assert r["selective_units"] == 0 and r["exact_nodes"] == {"variant": 0.0, "family": 0.0, "maker": 0.0}
    json.dumps(res, allow_nan=False)


def test_planted_family_unit():
    """Unit 0 fires on family A's two classes only -> selective for exactly that node, LCA height 1; unit 1 fires
    on every class (not selective), unit 2 on one image (too few)."""
    B = 5 * 12
    label_B = np.repeat(np.arange(5), 12)
    c = np.zeros((B, 3), np.float32)
    c[label_B <= 1, 0] = 1.0 + np.random.default_rng(1).random((label_B <= 1).sum())
    c[:, 1] = 1.0
    c[30, 2] = 5.0
    s = ontology.evaluate(fake_ctx({"sae": c}, 12))["by"]["sae"]
    assert s["selective_units"] == 1 and s["heights"]["1"] == 1.0 and s["mean_height"] == 1.0
    assert s["exact_nodes"]["family"] == pytest.approx(1 / 3) and s["exact_nodes"]["variant"] == 0.0
    assert s["holds_on_scoring"] == 1.0 and s["holds_chance"] == pytest.approx(2 / 5)
    assert s["mean_height_chance"] == pytest.approx(0.2 * 1 + 0.2 * 2 + 0.6 * 3)


def test_missing_inputs(tmp_path):
    sae = node_units(4)
    with pytest.raises(Missing):
        ontology.evaluate(fake_ctx({"sae": sae}, 4, tree=None))
    with pytest.raises(Missing):  # 2 classes in the tree
        ontology.evaluate(fake_ctx({"sae": sae[:8]}, 4, names=["a1", "c1"]))
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(TREE.to_json()))
    res = ontology.evaluate(fake_ctx({"sae": sae}, 4, tree=None, options={"hierarchy": str(path)}))
    assert res["levels"] == ["variant", "family", "maker"]


def test_real_run(ctx):
    res = ontology.evaluate(ctx)
    json.dumps(res, allow_nan=False)
    assert res["levels"] == ["variant", "family", "manufacturer"]
    assert res["nodes"] == {"variant": 22, "family": 10, "manufacturer": 5} and res["split"]["classes"] == 22
    assert set(res["by"]) == {"sae", "random_sae", "raw", "pca", "kmeans"} == set(res["permutation_spearman"])
    for e, r in res["by"].items():
        assert 0 <= r["selective_units"] <= r["of"]
        for v in [*r["heights"].values(), *r["exact_nodes"].values(), r["holds_on_scoring"], r["holds_chance"]]:
            assert v is None or 0.0 <= v <= 1.0
        if r["selective_units"]:
            assert sum(r["heights"].values()) == pytest.approx(1.0) and sum(r["heights_chance"].values()) == pytest.approx(1.0)
        assert r["spearman"] is None or -1.0 <= r["spearman"] <= 1.0
    head, rows = ontology.table(res)
    assert head[1] == "sae" and all(len(row) == len(head) for row in rows)
    lines = ontology.headline(res)
    assert 1 <= len(lines) <= 3 and all("random_sae" in v for v in lines.values())
