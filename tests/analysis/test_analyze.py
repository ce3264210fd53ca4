"""analyze() on a planted store: every statistic lands where the planted structure says."""

from __future__ import annotations

import numpy as np
import pytest

from visae.analysis.db import FeatureDB
from visae.analysis.run import AnalyzeConfig, analyze, summary
from visae.errors import VisaeError

from analysis_fixtures import GRID, cell_parts_truth, make_dataset, make_run, make_store


def test_statistics_top_examples_and_parts(planted):
    run, store, labels = planted
    # 12 images only: allow 4 top patches per image and 4 images of evidence (defaults: 2 and 8)
    db_path = analyze(AnalyzeConfig(run=run, top=4, batch_images=5, per_image=4, min_images=4))
    with FeatureDB(db_path) as db:
        lat = {r["id"]: r for r in db.latents()}
        assert lat[0]["freq"] == pytest.approx(48 / 192)  # wing cells (8 of 16) of class-0 images (6 of 12)
        assert lat[1]["freq"] == pytest.approx(0.25)  # tail cells (4 of 16) of every image
        assert lat[2]["freq"] == 1.0 and lat[3]["freq"] == 0.0
        assert lat[0]["max_act"] == pytest.approx(1 + 10 / 12)
        assert lat[1]["mean_act"] == pytest.approx(2.0)
        assert lat[0]["top_class"] == 0 and lat[0]["class_share"] == pytest.approx(1.0)
        assert lat[0]["class_selectivity"] == pytest.approx(1.0) and lat[0]["class_selective"] == 1
        assert lat[0]["class_entropy"] == pytest.approx(0.0) and lat[0]["n_images"] == 6
        assert lat[1]["class_share"] == pytest.approx(0.5) and lat[1]["class_entropy"] == pytest.approx(np.log(2))
        assert lat[1]["class_selectivity"] == pytest.approx(0.0) and lat[1]["class_selective"] == 0
        assert (lat[0]["part"], lat[0]["part_share"], lat[0]["part_images"], lat[0]["part_pure"]) == (1, 1.0, 4, 1)
        assert (lat[1]["part"], lat[1]["part_share"], lat[1]["part_pure"]) == (2, 1.0, 1)
        assert lat[3]["top_class"] == -1 and lat[3]["part"] == -1
        assert lat[0]["label"] == "wing" and lat[0]["label_source"] == "part"

        top = db.top_examples(0, "max")
        assert [t["image_index"] for t in top] == [10, 8, 6, 4]
        assert top[0]["image_id"] == "img010" and top[0]["label"] == 0
        expected_map = np.where(cell_parts_truth() == 1, 1 + 10 / 12, 0.0).reshape(GRID, GRID)
        np.testing.assert_allclose(top[0]["map"], expected_map, rtol=1e-3)
        sums = db.top_examples(0, "sum")
        assert sums[0]["score"] == pytest.approx(8 * (1 + 10 / 12), rel=1e-5)
        assert db.top_examples(3, "max") == []  # a dead latent has no top images
        assert {r["ranking"] for r in db.query("SELECT DISTINCT ranking FROM top_examples")} == {"max", "sum"}

        hist = db.histogram(1)
        assert hist.sum() == 48 and (hist > 0).sum() == 1
        assert db.class_mass(0) == [(0, pytest.approx(sum((1 + i / 12) * 8 for i in range(0, 12, 2))))]
        assert db.names("parts") == ["background", "wing", "tail"]
        channels = {(r["channel"], r["sign"]): (r["part"], r["part_share"]) for r in db.query("SELECT * FROM channels")}
        assert len(channels) == 12 and channels[0, 1] == (1, 1.0) and channels[1, 1] == (2, 1.0)
        assert [tuple(r) for r in db.query("SELECT name, n_images, n_tokens FROM classes")] == [("jet", 6, 96), ("prop", 6, 96)]

    s = summary(run)
    assert s["n_latents"] == 6 and s["n_images"] == 12 and s["n_tokens"] == 192
    pure = s["part_pure"]
    assert pure["sae"]["n"] >= 2 and pure["sae"]["of"] == 6 and pure["sae"]["frac"] == pure["sae"]["n"] / 6
    assert pure["raw"]["n"] >= 2 and pure["raw"]["of"] == 12 and pure["random"]["of"] == 6
    assert s["class_selective"]["sae"]["n"] >= 1 and "definition" in s["class_selective"]
    assert s["dead_pct"] == pytest.approx(100 / 6) and s["dense_pct"] >= 100 / 6
    assert "not the pooled" in s["text_labels"]


def test_batch_size_does_not_change_results(planted, tmp_path):
    run, store, _ = planted
    a = analyze(AnalyzeConfig(run=run, top=3, batch_images=1))
    rows_a = FeatureDB(a).query("SELECT latent, ranking, rank, image_index, score FROM top_examples ORDER BY 1, 2, 3")
    lat_a = FeatureDB(a).query("SELECT freq, mean_act, max_act, part, part_share FROM latents ORDER BY id")
    b = analyze(AnalyzeConfig(run=run, top=3, batch_images=12, force=True))
    rows_b = FeatureDB(b).query("SELECT latent, ranking, rank, image_index, score FROM top_examples ORDER BY 1, 2, 3")
    lat_b = FeatureDB(b).query("SELECT freq, mean_act, max_act, part, part_share FROM latents ORDER BY id")
    np.testing.assert_allclose(np.array(lat_a)[:, :3], np.array(lat_b)[:, :3], rtol=1e-6)
    no_ties = [0, 1, 3, 4, 5]  # latent 2 is 0.3 everywhere: its top patches are a tie
    np.testing.assert_array_equal(np.array(lat_a)[no_ties, 3:], np.array(lat_b)[no_ties, 3:])
    # latents 0, 1, 3 have no ties among images; compare their ranked lists exactly
    pick = lambda rows: [tuple(r) for r in rows if r["latent"] in (0, 3)]  # noqa: E731
    assert pick(rows_a) == pick(rows_b)


def test_cls_ranking_and_sparse_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, labels = make_dataset(tmp_path, 8)
    store = make_store(tmp_path / "store", dataset, labels, n_cls=1)
    run = make_run(tmp_path / "run", store, arch="topk")  # sparse codes (top-3 per token)
    with FeatureDB(analyze(AnalyzeConfig(run=run, top=3))) as db:
        assert [t["image_index"] for t in db.top_examples(0, "cls")] == [7, 5, 3]
        assert [t["image_index"] for t in db.top_examples(0, "max")] == [6, 4, 2]
        assert db.latent(0)["freq"] == pytest.approx((4 * 8 + 4) / (8 * 17))


def test_pooled_store_has_one_value_per_image_and_no_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, labels = make_dataset(tmp_path, 6)
    store = make_store(tmp_path / "store", dataset, labels, pooled=True, layer="head.pooled")
    run = make_run(tmp_path / "run", store, layer="head.pooled")
    with FeatureDB(analyze(AnalyzeConfig(run=run, top=2, min_images=3))) as db:
        assert db.grid == (1, 1) and db.meta["summary"]["part_pure"] is None
        top = db.top_examples(0, "max")
        assert [t["image_index"] for t in top] == [4, 2] and top[0]["map"].shape == (1, 1)
        assert top[0]["map"][0, 0] == pytest.approx(1 + 4 / 6, rel=1e-3)
        assert db.latent(0)["freq"] == pytest.approx(0.5) and db.latent(0)["part"] == -1
        assert db.latent(0)["label"] == "jet" and db.latent(0)["label_source"] == "class"


def test_reuses_a_db_of_the_same_settings_and_refuses_others_and_a_mismatched_store(planted, tmp_path):
    run, store, labels = planted
    db = analyze(AnalyzeConfig(run=run))
    with FeatureDB(db) as first:
        made = first.meta["db_id"]
    assert analyze(AnalyzeConfig(run=run, device="cpu", batch_images=3)) == db  # same content: reused, not rebuilt
    with FeatureDB(db) as again:
        assert again.meta["db_id"] == made
    with pytest.raises(VisaeError, match=r"already exists, analysed with other settings \(top, seed\); pass --force"):
        analyze(AnalyzeConfig(run=run, top=8, seed=1))
    other = make_store(tmp_path / "other", make_dataset(tmp_path, 4)[0], labels[:4], layer="blocks.1")
    with pytest.raises(VisaeError, match="layer 'blocks.3' but the store .* holds layer 'blocks.1'"):
        analyze(AnalyzeConfig(run=run, store=other, force=True))
    dino = make_store(tmp_path / "dino", make_dataset(tmp_path, 4)[0], labels[:4], backbone="hf:other")
    with pytest.raises(VisaeError, match="backbone"):
        analyze(AnalyzeConfig(run=run, store=dino, force=True))
    with pytest.raises(VisaeError, match="is a visae store, not a sae-run"):
        analyze(AnalyzeConfig(run=store))


def test_a_db_of_the_previous_schema_asks_for_a_new_analysis(planted, tmp_path):
    """A feature DB written before near-duplicates, border units and guesses (schema 2) is refused with
    the command that rebuilds it, by the reader and by the report, rather than crashing on a missing column."""
    import json
    import sqlite3

    from visae.reporting import ReportConfig, report

    run, _, _ = planted
    db_path = analyze(AnalyzeConfig(run=run, top=2))
    con = sqlite3.connect(db_path)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(2),))
    con.execute("ALTER TABLE latents DROP COLUMN guess")
    con.commit()
    con.close()
    with pytest.raises(VisaeError, match=r"older visae \(feature DB schema 2, now 3\).*rerun `visae analyze --force`"):
        FeatureDB(db_path)
    with pytest.raises(VisaeError, match="rerun `visae analyze --force`"):
        report(ReportConfig(run=run, out=tmp_path / "r.html"))
