"""Sparse probing (visae.evals.probing): balanced accuracy by hand, the probe's class balance, planted
concepts, factors, missing inputs, and the small real run (AP and the split: test_scores.py)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from visae.evals import probing
from visae.evals.context import BASELINES
from visae.evals.data import EvalSet, Missing


def test_balanced_accuracy_hand_value():
    pred = np.array([True, True, False, False])
    true = np.array([True, False, False, False])
    assert probing.balanced_accuracy(pred, true) == pytest.approx((1 + 2 / 3) / 2)
    assert probing.balanced_accuracy(np.zeros(4, bool), true) == pytest.approx(0.5)  # all negative: chance


def test_logistic_probe_is_class_balanced_and_separates():
    y = np.r_[np.ones(5), np.zeros(45)]
    w, b = probing.fit_logistic(np.zeros((50, 1)), y, probing.L2)  # uninformative feature: balanced weights give p = 1/2
    assert abs(w[0]) < 1e-8 and abs(b) < 1e-6
    u = np.r_[np.linspace(1, 2, 5), np.linspace(-2, 0.5, 45)][:, None]
    w, b = probing.fit_logistic(u, y, probing.L2)
    assert ((u[:, 0] * w[0] + b > 0) == (y == 1)).all()


def _eval_set(label, tokens=3, factors=None, class_names=None):
    B = len(label)
    image_T = np.repeat(np.arange(B), tokens)
    return EvalSet(torch.zeros(B * tokens, 4), image_T, np.tile(np.arange(tokens), B), np.asarray(label, np.int64),
                   [str(i) for i in range(B)], np.arange(B), class_names or [f"c{i}" for i in range(max(label) + 1)],
                   None, "val", "test", factors_B=factors)  # fmt: skip


def _ctx(es, codes, **options):
    return types.SimpleNamespace(heldout=es, codes=lambda name: codes[name], seed=0, options=options)


def _planted(B=120, S=12, tokens=3, seed=0):
    """4 classes; SAE unit 3 fires (on one token) exactly on class 0 images; everything else noise."""
    rng = np.random.default_rng(seed)
    label = np.arange(B) % 4
    codes = {}
    for name in ("sae", *BASELINES):
        z = rng.random((B * tokens, S)).astype(np.float32) * (rng.random((B * tokens, S)) < 0.3)
        codes[name] = torch.from_numpy(z)
    z = codes["sae"].clone()
    z[:, 3] = 0
    z[np.flatnonzero(np.repeat(label == 0, tokens))[::tokens], 3] = 2.0  # the first token of each class-0 image
    codes["sae"] = z
    return label, codes


def test_planted_latent_is_found_and_noise_scores_near_chance():
    label, codes = _planted()
    res = probing.evaluate(_ctx(_eval_set(label), codes))
    assert res["split"] == {"selection_images": 60, "scoring_images": 60, "seed": 0, "stratified_by": "class label"}
    c0 = next(c for c in res["concepts"] if c["value"] == "c0")
    assert c0["positives"] == {"selection": 15, "scoring": 15} and c0["chance_ap"] == pytest.approx(0.25)
    sae = c0["by"]["sae"]
    assert sae["best_latent"] == 3 and sae["ap"] == pytest.approx(1.0) and sae["probe1d_acc"] == pytest.approx(1.0)
    assert sae["topk"]["1"]["acc"] == pytest.approx(1.0) and sae["topk"]["1"]["ap"] == pytest.approx(1.0)
    # noise: the best of 12 random units, chosen on one half, is near chance on the other
    others = [c["by"][e] for c in res["concepts"] for e in res["encoders"] if not (c["value"] == "c0" and e == "sae")]
    assert np.mean([o["probe1d_acc"] for o in others]) == pytest.approx(0.5, abs=0.08)
    assert np.mean([o["ap"] for o in others]) == pytest.approx(0.25, abs=0.08)
    assert res["mean"]["class"]["concepts"] == 4 and set(res["mean"]["class"]) == {"concepts", "sae", *BASELINES}
    assert res["chance"]["class"] == {"acc": 0.5, "ap": pytest.approx(0.25)}
    json.dumps(res, allow_nan=False)


def test_factors_unknown_values_and_single_value_factors():
    label, codes = _planted()
    B = len(label)
    wing = np.where(label % 2 == 0, "low", "high").astype(object)
    wing[:8] = "None"  # not recorded: out of both sides of the task
    factors = {"wing": wing.astype(str), "tail": np.full(B, "T"), "rare": np.where(np.arange(B) < 6, "x", "y")}
    res = probing.evaluate(_ctx(_eval_set(label, factors=factors), codes, probing_encoders=["sae", "raw"]))
    kinds = {(c["kind"], c["value"]) for c in res["concepts"]}
    assert {("wing", "low"), ("wing", "high")} <= kinds and ("wing", "None") not in kinds
    assert not any(k == "tail" for k, _ in kinds)  # one value: no negatives
    assert ("rare", "x") not in kinds and ("rare", "y") not in kinds  # 6 positives: under 4 in a half (negatives for y)
    low = next(c for c in res["concepts"] if c["value"] == "low")
    assert sum(low["positives"].values()) + sum(low["negatives"].values()) == B - 8
    assert set(low["by"]) == {"sae", "raw"} and "wing" in res["mean"]


def test_factors_alone_are_enough():
    label, codes = _planted()
    factors = {"engines": np.where(np.arange(len(label)) % 3 == 0, "2", "4")}
    res = probing.evaluate(_ctx(_eval_set(np.full(len(label), -1), factors=factors, class_names=["a"]), codes))
    assert {c["kind"] for c in res["concepts"]} == {"engines"} and "class" not in res["mean"]
    assert probing.headline(res)["probing, factors"].startswith("engines")


def test_missing_inputs_raise_missing():
    label, codes = _planted()
    with pytest.raises(Missing):  # one class, no factors
        probing.evaluate(_ctx(_eval_set(np.zeros(len(label), int)), codes))
    with pytest.raises(Missing):  # no labels at all
        probing.evaluate(_ctx(_eval_set(np.full(len(label), -1), class_names=["a"]), codes))
    with pytest.raises(Missing):  # too few images for 4 positives per half
        probing.evaluate(_ctx(_eval_set(label[:20]), {k: v[:60] for k, v in codes.items()}))


def test_table_and_headline_on_planted():
    label, codes = _planted()
    res = probing.evaluate(_ctx(_eval_set(label), codes))
    header, rows = probing.table(res)
    assert header == ["concepts", "measure", "sae", *BASELINES, "chance"]
    assert len(rows) == 2 + len(probing.KS) and all(len(r) == len(header) for r in rows)
    line = probing.headline(res)["probing, classes"]
    assert all(e in line for e in BASELINES) and "chance" in line


def _check_real(res, ctx):
    json.dumps(res, allow_nan=False)
    assert res["split"]["selection_images"] + res["split"]["scoring_images"] == ctx.heldout.n_images
    assert res["encoders"] == ["sae", *BASELINES]
    for c in res["concepts"]:
        assert min(c["positives"].values()) >= res["min_positives"] and 0 < c["chance_ap"] < 1
        for e in res["encoders"]:
            b = c["by"][e]
            assert 0 <= b["ap"] <= 1 and 0 <= b["probe1d_acc"] <= 1
            assert all(0 <= v["acc"] <= 1 and 0 <= v["ap"] <= 1 for v in b["topk"].values())
            assert 0 <= b["best_latent"] < ctx.encoder(e).width
    for m in res["mean"].values():
        assert set(m) == {"concepts", "sae", *BASELINES} and set(m["sae"]["topk"]) == {str(k) for k in probing.KS}
    header, rows = probing.table(res)
    assert rows and all(len(r) == len(header) for r in rows)
    h = probing.headline(res)
    assert set(h) == {"probing, classes", "probing, factors"}
    print(header, *rows, *h.values(), sep="\n")


def test_real_run(ctx):
    """132 held-out images of 22 classes: 3 per class per half, so the classes are skipped and the factors scored;
    with 3 positives per half allowed, the classes are scored too."""
    import dataclasses

    res = probing.evaluate(ctx)
    _check_real(res, ctx)
    kinds = {c["kind"] for c in res["concepts"]}
    assert res["skipped"]["class"] == 22 and "class" not in kinds and {"planform", "engines", "tail"} <= kinds
    assert "skipped" in probing.headline(res)["probing, classes"]
    res3 = probing.evaluate(dataclasses.replace(ctx, options={"probing_min_positives": 3}))
    _check_real(res3, ctx)
    assert res3["mean"]["class"]["concepts"] == 22
