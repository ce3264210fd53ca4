"""Concept recovery (visae.evals.concepts): Purity@16 by hand, planted concepts and a planted dictionary
(trained vs random-init SAE), the real small run, and missing inputs (AP, AUROC, the split: test_scores.py)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from visae.evals import concepts as cc
from visae.evals.data import EvalSet, Missing
from visae.evals.scores import split_halves


def eval_set(B: int, G: int, label_B=None, parts_T=None, factors_B=None, acts_TD=None) -> EvalSet:
    label_B = np.arange(B) % 4 if label_B is None else np.asarray(label_B)
    acts = torch.zeros(B * G, 4) if acts_TD is None else acts_TD
    return EvalSet(acts, np.repeat(np.arange(B), G), np.tile(np.arange(G), B), label_B, [str(i) for i in range(B)],
                   np.arange(B), [f"c{i}" for i in range(int(label_B.max()) + 1)], (1, G), "val", "toy",
                   parts_T=parts_T, part_names=None if parts_T is None else ["background", "wing", "tail"],
                   factors_B=factors_B)  # fmt: skip


def fake_ctx(es: EvalSet, codes: dict[str, torch.Tensor], seed: int = 0, **options) -> types.SimpleNamespace:
    return types.SimpleNamespace(heldout=es, codes=lambda name: codes[name], seed=seed, options=options)


# ------------------------------------------------------------------ Purity@16 by hand


def test_purity_at_16_by_hand():
    image_N = np.repeat(np.arange(10), 4)
    z_N = np.zeros(40)
    y_N = np.zeros(40, dtype=bool)
    z_N[0:4] = [10, 9, 8, 7]  # image 0: only its top 2 count
    y_N[2:4] = True  # ... and they are not on the concept; its 3rd and 4th are
    for b in range(1, 10):  # images 1-9: the top token on the concept, the second (lower) not
        z_N[4 * b : 4 * b + 2] = [5 - 0.1 * b, 1]
        y_N[4 * b] = True
    rng = np.random.default_rng(0)
    # top 16 at <= 2 per image: image 0's 10 and 9 (off), 9 concept tokens, then 5 of the nine 1.0 tokens (off)
    assert cc.purity_at(z_N, image_N, y_N, rng) == pytest.approx(9 / 16)
    z_N[4 * 8 :] = 0  # two images fewer carry the unit: 8 images remain
    assert cc.purity_at(z_N, image_N, y_N, rng) == pytest.approx(7 / 16)
    z_N[4 * 7 :] = 0
    assert cc.purity_at(z_N, image_N, y_N, rng) is None


# ------------------------------------------------------------------ planted concepts


def planted_toy(seed: int = 0):
    """40 images x 16 tokens, parts wing (1) and tail (2), factor engines in {jet, prop}; unit 3 of "sae" equals
    the wing indicator, unit 5 is 2 on one token of every jet image (0 elsewhere); the baselines are random."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)  # seeded: the global torch generator differs per process
    B, G = 40, 16
    parts_T = rng.choice(3, size=B * G, p=[0.7, 0.2, 0.1])
    engines_B = np.where(np.arange(B) % 2 == 0, "jet", "prop")
    es = eval_set(B, G, parts_T=parts_T, factors_B={"engines": engines_B, "nose": np.full(B, "round")})
    sae = torch.rand(B * G, 8, generator=g) * 0.5
    sae[:, 3] = torch.from_numpy(parts_T == 1).float()
    sae[:, 5] = 0.0
    sae[np.flatnonzero(engines_B[es.image_T] == "jet")[::G], 5] = 2.0  # one token of every jet image
    codes = {name: torch.rand(B * G, 8, generator=g) for name in cc.ENCODERS}
    codes["sae"] = sae
    return es, codes


def test_planted_unit_is_chosen_with_ap_one_and_purity_one():
    es, codes = planted_toy()
    r = cc.evaluate(fake_ctx(es, codes))
    by = {(c["kind"], c["value"]): c for c in r["concepts"]}
    assert set(by) == {("part", "wing"), ("part", "tail"), ("engines", "jet"), ("engines", "prop")}  # nose: one value
    wing = by[("part", "wing")]
    assert wing["level"] == "patch" and wing["by"]["sae"]["unit"] == 3
    assert wing["by"]["sae"]["ap"] == pytest.approx(1.0) and wing["by"]["sae"]["auroc"] == pytest.approx(1.0)
    assert wing["by"]["sae"]["purity16"] == pytest.approx(1.0)
    jet = by[("engines", "jet")]
    assert jet["level"] == "image" and jet["by"]["sae"]["unit"] == 5 and jet["by"]["sae"]["ap"] == pytest.approx(1.0)
    assert jet["by"]["sae"]["purity16"] is None and jet["chance_ap"] == pytest.approx(0.5)
    for name in cc.BASELINES:  # random units: near chance
        for c in r["concepts"]:
            assert abs(c["by"][name]["ap"] - c["chance_ap"]) < 0.25
        assert r["summary"][name]["map"] < r["chance"]["map"] + 0.1
    assert r["split"]["selection_images"] + r["split"]["scoring_images"] == 40
    assert r["chance"]["map"] == pytest.approx(np.mean([c["chance_ap"] for c in r["concepts"]]))
    json.dumps(r, allow_nan=False)


def test_selection_never_sees_the_scoring_half():
    """A unit perfect on the selection half but inverted on the scoring half is chosen, and scores low."""
    B, G = 32, 4
    parts_T = np.tile([1, 0, 0, 0], B)
    es = eval_set(B, G, parts_T=parts_T)
    sel_T = split_halves(es.label_B, 0)[es.image_T]
    z = torch.from_numpy(np.where(sel_T, parts_T == 1, parts_T == 0).astype(np.float32))
    fair = torch.from_numpy(((parts_T == 1) | (np.arange(B * G) % 8 == 1)).astype(np.float32))  # AP 1/2 on both halves
    codes = {name: torch.stack([z, fair], 1) for name in cc.ENCODERS}
    r = cc.evaluate(fake_ctx(es, codes))
    (wing,) = r["concepts"]
    assert wing["by"]["sae"]["unit"] == 0  # chosen on the selection half, where it is perfect
    assert wing["by"]["sae"]["ap"] == pytest.approx(wing["chance_ap"]) and wing["by"]["sae"]["auroc"] == pytest.approx(0.0)


def test_rare_concepts_are_excluded_and_missing_inputs_raise():
    es, codes = planted_toy()
    es.factors_B["winglets"] = np.where(np.arange(40) < 3, "True", "False")
    r = cc.evaluate(fake_ctx(es, codes))
    assert {(e["kind"], e["value"]) for e in r["excluded"]} == {("winglets", "True"), ("winglets", "False")}
    with pytest.raises(Missing, match="no part masks or factor labels"):
        cc.evaluate(fake_ctx(eval_set(8, 4), codes))
    with pytest.raises(Missing, match="no part masks or factor labels"):  # a factor with one value is no concept
        cc.evaluate(fake_ctx(eval_set(8, 4, factors_B={"nose": np.full(8, "round")}), codes))
    with pytest.raises(Missing, match="positives and negatives in each half"):
        cc.evaluate(fake_ctx(eval_set(6, 4, factors_B={"nose": np.array(["a", "b"] * 3)}), codes))


# ------------------------------------------------------------------ a planted dictionary: trained vs random-init SAE


def planted_dictionary_ctx(seed: int = 0, B: int = 80, G: int = 16, D: int = 256, n_parts: int = 6, S: int = 32):
    """Tokens = sparse combinations of D orthonormal directions: direction p (amplitude 1-3) on the tokens of
    part p, each of the other D - n_parts directions on 10% of tokens; the "trained" ReLU SAE's encoder is the
    first S directions (the parts' among them); ``random_sae`` is the context's own random-init baseline."""
    from visae.evals.context import EvalContext
    from visae.sae.base import SAESpec, create_sae

    rng = np.random.default_rng(seed)
    dirs_KD = np.linalg.qr(rng.normal(size=(D, D)))[0].T
    parts_T = np.where(rng.random(B * G) < 0.5, 0, rng.integers(1, n_parts + 1, B * G))
    amp_TK = (rng.random((B * G, D)) < 0.1) * rng.uniform(1, 3, (B * G, D))
    amp_TK[:, :n_parts] = 0
    on = np.flatnonzero(parts_T > 0)
    amp_TK[on, parts_T[on] - 1] = rng.uniform(1, 3, len(on))
    x_TD = torch.tensor(amp_TK @ dirs_KD + 0.1 * rng.normal(size=(B * G, D)), dtype=torch.float32)
    es = eval_set(B, G, parts_T=parts_T, acts_TD=x_TD)
    es.part_names = ["background"] + [f"part{p}" for p in range(1, n_parts + 1)]
    sae = create_sae(SAESpec(arch="relu", d_in=D, d_sae=S))
    with torch.no_grad():
        W_SD = torch.tensor(dirs_KD[:S], dtype=torch.float32)
        sae.W_enc.copy_(W_SD.T), sae.W_dec.copy_(W_SD), sae.b_enc.fill_(-0.5), sae.b_dec.zero_()
    return EvalContext(types.SimpleNamespace(normalization=None, path="planted"), sae, es, "planted", seed=seed)


def test_trained_dictionary_recovers_parts_random_init_sae_near_chance():
    r = cc.evaluate(planted_dictionary_ctx())
    s, chance = r["summary"], r["chance"]
    assert s["sae"]["map"] > 0.95 and s["sae"]["coverage@0.3"] == 1.0 and s["sae"]["purity@16"] > 0.95
    assert s["random_sae"]["map"] < chance["map"] + 0.12 and s["random_sae"]["coverage@0.3"] <= 0.2
    for c in r["concepts"]:
        assert c["by"]["sae"]["unit"] == int(c["value"].removeprefix("part")) - 1
    assert set(s) == set(cc.ENCODERS)
    header, rows = cc.table(r)
    assert [row[0] for row in rows] == ["SAE", "random SAE", "raw", "PCA", "k-means", "chance"]


# ------------------------------------------------------------------ the real small run


def test_real_run(ctx):
    r = cc.evaluate(ctx)
    json.dumps(r, allow_nan=False)
    assert set(r) >= {"split", "settings", "encoders", "concepts", "excluded", "summary", "chance"}
    assert set(r["summary"]) == set(cc.ENCODERS) and not r["skipped"]
    n = ctx.heldout.n_images
    assert r["split"]["selection_images"] + r["split"]["scoring_images"] == n
    kinds = {c["kind"] for c in r["concepts"]}
    assert "part" in kinds and len(kinds) > 1  # parts and factor values
    for c in r["concepts"]:
        assert 0 < c["chance_ap"] < 1 and c["positives"] >= 4
        for name in cc.ENCODERS:
            b = c["by"][name]
            assert 0 <= b["ap"] <= 1 and 0 <= b["auroc"] <= 1 and 0 <= b["unit"] < r["encoders"][name]["width"]
            assert b["purity16"] is None or 0 <= b["purity16"] <= 1
    for s in r["summary"].values():
        assert 0 <= s["map"] <= 1 and 0 <= s["coverage@0.3"] <= 1 and s["concepts"] == len(r["concepts"])
    header, rows = cc.table(r)
    assert len(rows) == len(cc.ENCODERS) + 1 and all(len(row) == len(header) for row in rows)
    lines = cc.headline(r)
    assert 1 <= len(lines) <= 3 and all("SAE" in v and "random SAE" in v and "chance" in v for v in lines.values())
