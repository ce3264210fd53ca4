"""OOD detection (visae.evals.ood): hand-computed metrics and scores, planted cases, a real run with an OOD split
(ranks, AUROC and Spearman themselves: test_scores.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from visae.evals import ood
from visae.evals.data import Missing

# --- metrics by hand -------------------------------------------------------------------------------


def test_auroc_and_fpr95_by_hand():
    id_N, ood_M = np.array([0.0, 1, 2, 3]), np.array([2.0, 3, 4, 5])
    # pairs (ood > id) + ½ ties: o=2 → 2 + ½, o=3 → 3 + ½, o=4 → 4, o=5 → 4: 14 / 16
    assert ood.auroc(id_N, ood_M) == pytest.approx(14 / 16)
    # τ = the ⌈0.95·4⌉ = 4th largest OOD score = 2; ID scores ≥ 2: {2, 3}
    assert ood.fpr_at_95(id_N, ood_M) == pytest.approx(0.5)
    assert ood.auroc(ood_M, id_N) == pytest.approx(2 / 16)  # swapped: 1 − 14/16
    # 20 OOD scores 1..20: τ = 19th largest = 2; ID 0, 1, 2, 5 → 2 of 4 at or above it
    assert ood.fpr_at_95(np.array([0.0, 1, 2, 5]), np.arange(1.0, 21)) == pytest.approx(0.5)


def test_planted_shift_and_identical_distributions():
    rng = np.random.default_rng(1)
    id_N = rng.normal(size=2000)
    assert ood.auroc(id_N, rng.normal(size=2000) + 10) == pytest.approx(1.0)
    assert ood.fpr_at_95(id_N, rng.normal(size=2000) + 10) == 0.0
    same = rng.normal(size=2000)
    assert abs(ood.auroc(id_N, same) - 0.5) < 0.04
    assert abs(ood.fpr_at_95(id_N, same) - 0.95) < 0.03


# --- scores by hand --------------------------------------------------------------------------------


def test_logit_scores_by_hand():
    got = ood.logit_scores(np.array([[0.0, np.log(3.0)]]))
    assert got["msp"][0] == pytest.approx(-0.75)
    assert got["maxlogit"][0] == pytest.approx(-np.log(3.0))
    assert got["energy"][0] == pytest.approx(-np.log(4.0))


def test_profile_scores_by_hand():
    z = np.array([[1.0, 2, 3, 0], [0, 0, 0, 0]])
    q = ood.profiles(np.array([[2.0, 4, 6, 0], [1, 1, 1, 1]]))
    kl = ood.kl_score(z, q)
    assert kl[0] == pytest.approx(0.0, abs=1e-12) and kl[1] == pytest.approx(0.0, abs=1e-12)  # zero codes → uniform
    p = ood.smooth(np.array([[0.5, 0.5, 0.0, 0.0]]))
    qq = ood.smooth(np.array([[0.25, 0.25, 0.25, 0.25]]))
    assert ood.kl_score(np.array([[1.0, 1, 0, 0]]), np.array([[0.25] * 4]))[0] == pytest.approx((p * np.log(p / qq)).sum())
    sp = ood.spearman_score(np.array([[1.0, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1]]),
                            np.array([[2.0, 4, 6, 8], [4, 3, 2, 1], [1, 2, 3, 4]]))  # fmt: skip
    assert sp.tolist() == pytest.approx([0.0, 2.0, 1.0])


def test_knn_and_mahalanobis_by_hand():
    bank = np.array([[1.0, 0], [0, 1], [1, 1]])
    # to (1, 0): similarities 1, 0, 1/√2 → 2nd most similar 1/√2
    assert ood.knn_score(bank, np.array([[2.0, 0]]), k=2)[0] == pytest.approx(1 - 1 / np.sqrt(2))
    assert ood.knn_score(bank, np.array([[0.0, 0]]), k=1)[0] == pytest.approx(1.0)
    m = np.array([[-1.0, 0], [1, 0], [9, 1], [11, -1]])  # class 0 around (0, 0), class 1 around (10, 0)
    maha = ood.Mahalanobis.fit(m, np.array([0, 0, 1, 1]))
    assert maha.mean_CD.tolist() == [[0, 0], [10, 0]]
    # residuals (∓1, 0), (−1, 1), (1, −1): Σ = [[1, −.5], [−.5, .5]] (+ a 1e-6·tr/D ridge)
    cov = np.array([[1.0, -0.5], [-0.5, 0.5]])
    x = np.array([[1.0, 2.0]])
    want = min(float(d @ np.linalg.inv(cov) @ d) for d in (x[0] - [0, 0], x[0] - [10, 0]))
    assert maha.score(x)[0] == pytest.approx(want, rel=1e-4)
    assert maha.score(np.array([[10.0, 0]]))[0] == pytest.approx(0.0, abs=1e-9)


def test_planted_codes_separate_ood():
    """Training and ID images use latents 0-3 (their class's two), OOD images latents 4-7: the code scores catch them."""
    rng = np.random.default_rng(0)

    def images(n: int, lo: int, label: int) -> ood.Features:
        z = np.zeros((n, 8))
        z[:, lo : lo + 2] = rng.uniform(0.5, 1.5, (n, 2))
        logits = np.zeros((n, 2))
        logits[:, label] = 1.0
        return ood.Features("x", np.full(n, label), logits, rng.normal(size=(n, 3)), {"sae": z})

    def cat(a: ood.Features, b: ood.Features) -> ood.Features:
        return ood.Features("x", np.r_[a.label_B, b.label_B], np.r_[a.logits_BC, b.logits_BC], np.r_[a.mean_BD, b.mean_BD],
                            {"sae": np.r_[a.codes["sae"], b.codes["sae"]]})  # fmt: skip

    fit = cat(images(50, 0, 0), images(50, 2, 1))
    sid = ood.all_scores(fit, cat(images(30, 0, 0), images(30, 2, 1)))
    sood = ood.all_scores(fit, images(40, 4, 0))
    for name in ("sae:kl", "sae:spearman", "sae:knn"):
        assert ood.auroc(sid[name], sood[name]) > 0.99, name
        assert ood.fpr_at_95(sid[name], sood[name]) < 0.05, name
    assert abs(ood.auroc(sid["knn_raw"], sood["knn_raw"]) - 0.5) < 0.2  # raw means are pure noise here


# --- the shared real run: no OOD split -------------------------------------------------------------


def test_missing_without_ood_split(ctx):
    with pytest.raises(Missing, match="ood_split"):
        ood.evaluate(ctx)
    with pytest.raises(Missing, match="no split 'elsewhere'"):
        ood.evaluate(dataclasses.replace(ctx, options={"ood_split": "elsewhere"}))


# --- a real run whose dataset has an OOD split -----------------------------------------------------


def build_run_with_ood(root: Path, classifier: Path) -> dict[str, Path]:
    """tests/steering/run_fixture.py's recipe on a dataset with 88 OOD images, reusing the shared run's
    classifier (trained on the same generator's train split) and leaving out the feature DB."""
    import visae
    from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft

    data = root / "data"
    generate_synth_aircraft(SynthAircraftConfig(out=data, n_train=660, n_val=132, n_ood=88, seed=0, workers=1))
    spec = f"synth-aircraft:{data}"
    store = visae.extract(model=f"hf:{classifier}", layer="convnext.encoder.stages.1", data=spec, split="train",
                          out=root / "store", dtype="fp32", batch_size=128, device="cpu")  # fmt: skip
    run = root / "run"
    visae.train(store=str(store.path), out=str(run), arch="topk", k=4, d_sae=64, batch_size=256,
                training_tokens=40_000, holdout=0, device="cpu")  # fmt: skip
    return {"data": data, "store": Path(store.path), "run": run}


@pytest.fixture(scope="module")
def ood_result(tmp_path_factory, eval_run):
    from visae.analysis.inputs import open_sae, read_run
    from visae.evals.context import EvalContext
    from visae.evals.data import load_eval_set
    from visae.store.reader import Store

    paths = build_run_with_ood(tmp_path_factory.mktemp("ood_run"), eval_run["classifier"])
    info = read_run(paths["run"])
    store = Store(paths["store"])
    ctx = EvalContext(info, open_sae(info.sae_dir), load_eval_set(store, np.arange(2)), "two training images (unused)",
                      store, "cpu", 0, fit_tokens=4096, options={"ood_fit_images": 400})  # fmt: skip
    return ood.evaluate(ctx)


def test_real_run_with_ood_split(ood_result):
    r = ood_result
    print(json.dumps(r["scores"], indent=1))
    assert r["id"] == {"split": "val", "images": 132} and r["ood"] == {"split": "ood", "images": 88}
    assert r["fit"] == {"split": "train", "images": 400} and r["fit_images"] == 400
    assert r["head"]["kind"] == "classifier"
    names = set(r["scores"])
    assert {"sae:recon", "sae:kl", "sae:spearman", "sae:knn"} <= names
    assert {"msp", "maxlogit", "energy", "mahalanobis", "knn_raw"} <= names
    for enc in ("random_sae", "raw", "pca", "kmeans"):
        assert {f"{enc}:kl", f"{enc}:spearman", f"{enc}:knn"} <= names
    for name, v in r["scores"].items():
        assert v["kind"] == ("sae" if name.startswith("sae:") else "baseline")
        assert 0.0 <= v["auroc"] <= 1.0 and 0.0 <= v["fpr95"] <= 1.0, name
    assert set(r["definitions"]) >= {"recon", "kl", "spearman", "knn", "msp", "energy", "mahalanobis", "knn_raw"}
    json.dumps(r, allow_nan=False)
    header, rows = ood.table(r)
    assert header[:3] == ["score", "kind", "AUROC"] and len(rows) == len(r["scores"]) + 1
    assert all(len(row) == len(header) for row in rows) and rows[0][1] == "sae"
    lines = ood.headline(r)
    assert 1 <= len(lines) <= 3 and all(isinstance(v, str) and "\n" not in v for v in lines.values())
    assert "energy" in lines["OOD AUROC, baselines"]


def test_fit_and_id_images_disjoint_without_a_validation_split():
    import types

    s = types.SimpleNamespace(store_split="train", split=lambda name: range(50))
    fit, ids = ood.pick_images(s, "train", n_id=40, n_fit=1000, seed=0)
    assert len(fit) == 25 and len(ids) == 25 and not set(fit) & set(ids)
