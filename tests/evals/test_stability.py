"""Stability family: Hungarian matching, decoder cosine, held-out activation counterparts, abstractions."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch

from visae.evals import stability as st
from visae.evals.data import EvalSet, Missing
from visae.evals.scores import split_halves
from visae.data.base import Hierarchy


def _numpy_hungarian(score, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import fails: the numpy fallback
    return st.hungarian(score)


def test_hungarian_hand_matrices(monkeypatch):
    cost = np.array([[4.0, 1, 3], [2, 0, 5], [3, 2, 2]])
    assert st.hungarian_min(cost).tolist() == [1, 0, 2]  # 1 + 2 + 2 = 5, the unique optimum
    assert st.hungarian_min(np.array([[1.0, 9, 0], [0, 9, 1]])).tolist() == [2, 0]  # rectangular, N < M
    rows, cols, method = _numpy_hungarian(np.array([[0.9, 0.1], [0.8, 0.7], [0.0, 0.2]]), monkeypatch)  # N > M, maximise
    assert method == "numpy" and sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]


def test_hungarian_numpy_agrees_with_scipy(monkeypatch):
    pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 7), (40, 55), (55, 40), (200, 200)]:
        s = rng.normal(size=shape)
        r1, c1, m1 = st.hungarian(s)
        with monkeypatch.context() as mp:
            r2, c2, m2 = _numpy_hungarian(s, mp)
        assert (m1, m2) == ("scipy", "numpy") and len(r2) == min(shape)
        assert s[r1, c1].sum() == pytest.approx(s[r2, c2].sum(), abs=1e-9)
        assert len(set(c2.tolist())) == len(c2) and len(set(r2.tolist())) == len(r2)


def test_decoder_cosine_self_permuted_and_random():
    U = st.unit_rows(torch.randn(64, 32, generator=torch.Generator().manual_seed(0)))
    for other in (U, U[np.random.default_rng(1).permutation(64)] * 1.0):
        m = st.decoder_match(U, other)
        assert m["mean_cos"] == pytest.approx(1.0) and m["share_0.7"] == 1.0 and m["pairs"] == 64
    R = st.unit_rows(torch.randn(64, 32, generator=torch.Generator().manual_seed(2)))
    m = st.decoder_match(U, R)
    assert 0.1 < m["mean_cos"] < 0.6 and m["share_0.7"] < 0.1  # matched random directions in 32 d
    assert st.decoder_match(U, U[:10])["pairs"] == 10


def _planted(n_img=40, n_tok=4, seed=0):
    """A: 8 sparse latents; B: A's latents permuted with a little noise, plus 4 latents of noise."""
    g = torch.Generator().manual_seed(seed)
    T = n_img * n_tok
    a_TS = torch.rand(T, 8, generator=g) * (torch.rand(T, 8, generator=g) < 0.3)
    perm = torch.randperm(8, generator=g)
    b_TS = torch.cat([a_TS[:, perm] * 2 + 0.01 * torch.rand(T, 8, generator=g), torch.rand(T, 4, generator=g)], 1)
    r_TS = torch.rand(T, 8, generator=g)
    return a_TS, b_TS, r_TS


def _es(n_img=40, n_tok=4, ids=None, cells=None):
    image_T = np.repeat(np.arange(n_img), n_tok)
    return EvalSet(torch.zeros(n_img * n_tok, 3), image_T, np.tile(np.arange(n_tok) if cells is None else cells, n_img),
                   np.arange(n_img) % 4, ids or [f"i{i}" for i in range(n_img)], np.arange(n_img), ["a", "b", "c", "d"], (2, 2),
                   "val", "fake")  # fmt: skip


def _fake(es, codes, layer="l1", d_sae=8, options=None):
    W = torch.randn(d_sae, 3, generator=torch.Generator().manual_seed(d_sae))
    return types.SimpleNamespace(heldout=es, codes=lambda name: codes[name], seed=0, options=options or {},
                                 sae=types.SimpleNamespace(W_dec=W, d_in=3, d_sae=d_sae),
                                 run=types.SimpleNamespace(backbone="m", layer=layer, path=f"/runs/{layer}-{d_sae}"))  # fmt: skip


def test_correlation_finds_planted_counterparts():
    a_TS, b_TS, r_TS = _planted()
    sel_N = split_halves(np.arange(40) % 4, 0)[np.repeat(np.arange(40), 4)]
    res, rho_A = st.correlate(a_TS, b_TS, sel_N, 0.5)
    assert res["a_to_b"]["share"] == 1.0 and rho_A.min() > 0.99
    assert res["b_to_a"]["n"] == 8 and res["b_to_a"]["of"] == 12
    rnd, _ = st.correlate(a_TS, r_TS, sel_N, 0.5)
    assert rnd["a_to_b"]["share"] == 0.0 and abs(rnd["a_to_b"]["mean_r"]) < 0.2
    dead = torch.cat([a_TS, torch.zeros(len(a_TS), 1)], 1)  # a constant latent: r = 0, no counterpart
    res, rho = st.correlate(dead, b_TS, sel_N, 0.5)
    assert rho[-1] == 0.0 and res["a_to_b"]["n"] == 8


def test_evaluate_planted_cross_and_missing():
    a_TS, b_TS, _ = _planted()
    es_a, es_b = _es(), _es(cells=np.array([3, 2, 1, 0]))  # other token order: images are compared by per-image max
    other = _fake(es_b, {"sae": b_TS}, layer="l2", d_sae=12)
    ctx = _fake(es_a, {"sae": a_TS}, options={"compare": other})
    res = st.evaluate(ctx)
    assert res["mode"] == "cross" and "reason" in res["decoder"] and res["activation"]["samples"].startswith("image")
    assert res["activation"]["a_to_b"]["share"] == 1.0 and res["activation"]["n_selection"] == 20
    assert res["abstractions"]["matched"]["n"] == 8 and res["abstractions"]["unmatched"]["part_selective"] is None
    json.dumps(res, allow_nan=False)
    ctx.options = {"compare": _fake(es_a, {"sae": b_TS}, d_sae=12)}  # same layer, same tokens: per token, decoders compared
    res = st.evaluate(ctx)
    assert res["mode"] == "same_layer" and res["activation"]["samples"] == "token" and "mean_cos" in res["decoder"]
    assert "reason" in res["decoder"]["random_init"] and "reason" in res["activation"]["random_init"]  # no spec to rebuild
    assert "n/a" in st.table(res)[1][1][2] and st.headline(res)["activation"].endswith("other→this 66.7%")
    with pytest.raises(Missing, match="no second SAE"):
        st.evaluate(_fake(es_a, {"sae": a_TS}))
    with pytest.raises(Missing, match="different held-out images"):
        st.evaluate(_fake(es_a, {"sae": a_TS}, options={"compare": _fake(_es(ids=[f"j{i}" for i in range(40)]), {"sae": b_TS})}))


def test_part_and_class_levels_hand_case():
    # 8 images (classes 0..3, two per class), 2 tokens each; families: {0, 1, 2} -> f0, {3} -> f1
    image_T = np.repeat(np.arange(8), 2)
    label_B = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    es = EvalSet(torch.zeros(16, 2), image_T, np.tile([0, 1], 8), label_B, [str(i) for i in range(8)], np.arange(8),
                 ["c0", "c1", "c2", "c3"], (1, 2), "val", "fake", parts_T=np.r_[np.tile([1, 2], 7), 1, 1], part_names=["bg", "p1", "p2"],
                 hierarchy=Hierarchy(["variant", "family"], {"variant": {"c0": "f0", "c1": "f0", "c2": "f0", "c3": "f1"}}))  # fmt: skip
    codes = torch.zeros(16, 4)
    codes[label_B[image_T] == 0, 0] = 1.0  # class 0 only
    codes[label_B[image_T] <= 2, 1] = 1.0  # family f0: class share 1/3, family share 1
    codes[:15, 2] = 1.0  # on every image: class share 1/4, family share 1/2; parts 8 and 7 of 16 (not > 1/2)
    codes[0::2, 3] = torch.arange(8.0) + 1  # part 1 tokens of every image, and token 15 (part 1): 9 of 16 on part 1
    codes[15, 3] = 0.5
    level_S, names = st.class_levels(codes, es)  # latent 3: class means 1.5 3.5 5.5 7.5 (0.42); families 3.5, 7.5 (0.68)
    assert names == ["class", "family"] and level_S.tolist() == [0, 1, -1, 1]
    part_S = st.part_selective(codes, es.parts_T)
    assert part_S.tolist() == [False, False, False, True]  # latent 0: 2 of 16, latent 1: 6 (other top slots inactive)
    g = st.group_stats(np.array([True, True, False, True]), part_S, level_S, names)
    assert g["n"] == 3 and g["class_selective"] == pytest.approx(1 / 3) and g["above_leaf"] == {"family": pytest.approx(2 / 3)}
    assert g["part_selective"] == pytest.approx(1 / 3) and g["none"] == 0.0


@pytest.fixture(scope="module")
def pair(eval_run, tmp_path_factory):
    """The fixture's run and a second SAE trained on the same store with another seed, on the held-out store."""
    import visae
    from visae.evals.context import open_context

    run2 = tmp_path_factory.mktemp("stability") / "run_seed1"
    visae.train(store=str(eval_run["store"]), out=str(run2), arch="topk", k=4, d_sae=64, batch_size=256,
                training_tokens=40_000, holdout=0, device="cpu", seed=1)  # fmt: skip
    other = open_context(run2, eval_run["heldout"], device="cpu")
    return open_context(eval_run["run"], eval_run["heldout"], device="cpu", options={"compare": other})


def test_real_pair(pair, tmp_path):
    res = st.evaluate(pair)
    json.dumps(res, allow_nan=False)
    assert res["mode"] == "same_layer" and res["latents"] == {"a": 64, "b": 64}
    dec = res["decoder"]
    for d in (dec, dec["random_init"], dec["two_random"]):
        assert -1 <= d["mean_cos"] <= 1 and 0 <= d["share_0.7"] <= 1 and d["pairs"] == 64
    assert dec["mean_cos"] > dec["random_init"]["mean_cos"] + 0.1
    act = res["activation"]
    assert act["samples"] == "token" and act["n_selection"] + act["n_scoring"] == len(pair.heldout.image_T)
    for d in (act["a_to_b"], act["b_to_a"], act["random_init"]["a_to_b"], act["random_init"]["b_to_a"]):
        assert 0 <= d["share"] <= 1 and -1 <= d["mean_r"] <= 1 and sum(d["hist"]) == d["of"]
    assert act["a_to_b"]["share"] > act["random_init"]["a_to_b"]["share"]
    ab = res["abstractions"]
    assert ab["matched"]["n"] + ab["unmatched"]["n"] == 64 and ab["random_init"]["n"] == 64
    assert set(ab["random_init"]["above_leaf"]) == {"family", "manufacturer"}
    for g in ("matched", "unmatched", "random_init"):
        for k in ("part_selective", "class_selective", "none"):
            assert ab[g][k] is None or 0 <= ab[g][k] <= 1
    header, rows = st.table(res)
    assert all(len(r) == len(header) for r in rows) and len(rows) >= 6
    assert set(st.headline(res)) == {"decoder", "activation", "abstractions"}
    pytest.importorskip("matplotlib")
    assert st.plot(res, tmp_path / "stability.png") is None
    assert (tmp_path / "stability.png").read_bytes()[:4] == b"\x89PNG"
    print(json.dumps(res, indent=1), *st.table(res)[1], *st.headline(res).values(), sep="\n")
