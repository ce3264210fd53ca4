"""Token kinds and devices at analysis time: --tokens picks the kinds (default: those the SAE
trained on), a kind the store lacks or an unknown one is a one-line error, and --device."""

from __future__ import annotations

import json

import pytest
import torch

from visae.analysis.db import FeatureDB
from visae.analysis.run import AnalyzeConfig, analyze, summary
from visae.errors import VisaeError

from analysis_fixtures import GRID, make_dataset, make_run, make_store
from test_analysis_cli import cli

G = GRID * GRID


@pytest.fixture
def with_cls(tmp_path, monkeypatch):
    """(run, n_images) over a store of 1 CLS + 16 patch tokens per image."""
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, labels = make_dataset(tmp_path, 8)
    store = make_store(tmp_path / "store", dataset, labels, n_cls=1)
    return make_run(tmp_path / "run", store, arch="topk"), len(labels)


def test_tokens_cls_analyses_only_the_cls_tokens(with_cls):
    run, n = with_cls
    with FeatureDB(analyze(AnalyzeConfig(run=run, tokens="cls", top=3))) as db:
        s = db.meta["summary"]
        assert s["n_tokens"] == n and s["n_images"] == n and db.meta["analysed_kinds"] == ["cls"]
        assert not db.meta["has_grid"] and s["part_pure"] is None  # no grid among CLS tokens
        # the CLS token carries channel 0 on class-1 images only (odd indices)
        assert db.latent(0)["freq"] == pytest.approx(0.5)
        assert [t["image_index"] for t in db.top_examples(0, "cls")] == [7, 5, 3]
        assert db.latent(0)["top_class"] == 1 and db.latent(0)["class_selectivity"] == pytest.approx(1.0)
        assert [tuple(r) for r in db.query("SELECT n_tokens FROM classes")] == [(n // 2,), (n // 2,)]


def test_default_is_what_the_run_trained_on(with_cls):
    run, n = with_cls
    analyze(AnalyzeConfig(run=run, top=2))  # a run without token kinds in train.json: every kind
    assert summary(run)["n_tokens"] == n * (1 + G)
    assert FeatureDB(run).meta["analysed_kinds"] == ["cls", "patch"]
    (run / "train.json").write_text(json.dumps({"training_tokens": None, "tokens": "patch"}))
    analyze(AnalyzeConfig(run=run, top=2, force=True))
    assert summary(run)["n_tokens"] == n * G and FeatureDB(run).meta["analysed_kinds"] == ["patch"]
    (run / "train.json").write_text(json.dumps({"training_tokens": None, "tokens": None}))  # trainer default: patches
    analyze(AnalyzeConfig(run=run, top=2, force=True))
    assert summary(run)["n_tokens"] == n * G
    analyze(AnalyzeConfig(run=run, top=2, tokens="all", force=True))  # --tokens wins
    assert summary(run)["n_tokens"] == n * (1 + G)


def test_a_kind_the_store_lacks_or_does_not_know_is_one_line(planted, capsys):
    run, _, _ = planted  # a patch-only store
    with pytest.raises(VisaeError, match="holds no such tokens"):
        analyze(AnalyzeConfig(run=run, tokens="cls"))
    assert cli("analyze", "--run", str(run), "--tokens", "cls") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--tokens cls" in err and len(err.splitlines()) == 1
    assert cli("analyze", "--run", str(run), "--tokens", "cells") == 2
    err = capsys.readouterr().err.strip()
    assert "tokens" in err and "patch" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (run / "features.sqlite").exists()


def test_device_cpu_and_auto_agree_and_a_missing_gpu_is_one_line(planted, capsys):
    run, _, _ = planted
    analyze(AnalyzeConfig(run=run, top=3, device="cpu"))
    cpu = FeatureDB(run).query("SELECT freq, max_act, class_selectivity, part_share FROM latents ORDER BY id")
    analyze(AnalyzeConfig(run=run, top=3, device="auto", force=True))
    auto = FeatureDB(run).query("SELECT freq, max_act, class_selectivity, part_share FROM latents ORDER BY id")
    if not torch.cuda.is_available():
        assert [tuple(r) for r in cpu] == [tuple(r) for r in auto]
        assert cli("analyze", "--run", str(run), "--device", "cuda", "--force") == 2
        err = capsys.readouterr().err.strip()
        assert "GPU" in err and len(err.splitlines()) == 1
