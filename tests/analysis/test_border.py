"""Border/position units: a channel that fires on the frame of the grid is found, flagged in the DB
and the report, next to its baselines, and labelled as such rather than by its content."""

from __future__ import annotations

import numpy as np
import pytest

from visae.analysis.db import FeatureDB
from visae.analysis.run import AnalyzeConfig, analyze, summary
from visae.reporting import ReportConfig, report

from analysis_fixtures import GRID, make_dataset, make_run, make_store, planted_tokens


def frame_tokens(labels: np.ndarray) -> np.ndarray:
    """The planted tokens, with channel 5 at 1.0 on the grid's 12 edge cells and 0.1 on its 4 interior cells."""
    x = planted_tokens(len(labels), labels)
    y, xx = np.divmod(np.arange(GRID * GRID), GRID)
    edge = (y == 0) | (y == GRID - 1) | (xx == 0) | (xx == GRID - 1)
    x[:, :, 5] = np.where(edge, 1.0, 0.1)
    return x


@pytest.fixture
def frame_run(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, labels = make_dataset(tmp_path, 12)
    store = make_store(tmp_path / "store", dataset, labels, tokens_=frame_tokens(labels))
    return make_run(tmp_path / "run", store)


def test_a_frame_channel_is_a_border_unit_and_is_labelled_so(frame_run, tmp_path):
    with FeatureDB(analyze(AnalyzeConfig(run=frame_run, top=4, per_image=4, min_images=4))) as db:
        lat = {r["id"]: r for r in db.latents()}
        assert lat[5]["border"] == 1 and lat[5]["edge_ratio"] == pytest.approx(10.0, rel=1e-3)
        assert lat[5]["edge_share"] == pytest.approx(12 / 12.4, rel=1e-3)
        assert (lat[5]["label"], lat[5]["label_source"]) == ("border/position", "border")
        assert lat[5]["guess"] == "" or lat[5]["guess_why"] == "a border/position latent"
        # the tail (3 of its 4 cells on the edge, like 12 of the grid's 16) and a uniform channel are not
        assert lat[1]["edge_ratio"] == pytest.approx(1.0, rel=1e-3) and lat[1]["border"] == 0
        assert lat[2]["edge_ratio"] == pytest.approx(1.0, rel=1e-2) and lat[2]["border"] == 0
        assert lat[0]["label"] == "wing" and lat[0]["border"] == 0
        channels = {(r["channel"], r["sign"]): r["border"] for r in db.query("SELECT * FROM channels")}
        assert channels[5, 1] == 1 and channels[5, -1] == 0 and sum(channels.values()) == 1
    s = summary(frame_run)["border"]
    assert (s["sae"]["n"], s["raw"]["n"], s["raw"]["of"]) == (1, 1, 12) and "4x the mean per interior cell" in s["definition"]
    html = report(ReportConfig(run=frame_run, out=tmp_path / "r.html", images=2, thumb=32)).read_text()
    assert "<span class='badge border'>border/position</span>" in html and "Border and position units" in html
    assert "How to read the heatmaps" in html and "not of that image's own maximum" in html


def test_no_border_measure_without_an_interior(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, labels = make_dataset(tmp_path, 6)
    store = make_store(tmp_path / "store", dataset, labels, pooled=True, layer="head.pooled")
    run = make_run(tmp_path / "run", store, layer="head.pooled")
    with FeatureDB(analyze(AnalyzeConfig(run=run, top=2, min_images=3))) as db:
        assert db.meta["summary"]["border"] is None
        assert {r["border"] for r in db.latents()} == {0} and {r["edge_ratio"] for r in db.latents()} == {None}
