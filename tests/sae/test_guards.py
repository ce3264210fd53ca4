"""Guards before training: defaults fitted to the store, warnings with advice, refusals that --force overrides."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from visae.errors import VisaeError
from visae.sae.guards import plan
from visae.sae.train_config import SAEHparams, TrainConfig
from visae.store.select import Selection


class FakeView:
    """What plan() reads of a StoreView: its length and its store's image count."""

    def __init__(self, n_tokens: int, n_images: int, held: int = 0):
        self.n = n_tokens
        self.store = SimpleNamespace(n_images=n_images)
        self.selection = Selection().without(np.arange(held))

    def __len__(self) -> int:
        return self.n


def said(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture(autouse=True)
def loud(monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "0")


def test_the_demo_gets_no_warning_and_no_change(capsys):
    cfg = TrainConfig.build(store="s", out="o", training_tokens=6_000_000, batch_size=4096,
                            saes=[dict(name="topk", arch="topk", k=8, expansion=8)])  # fmt: skip
    demo = FakeView(1_459_200, 24_000, held=1_200)  # 95% of 24,000 images x 64 tokens
    assert plan(cfg, demo, d=64) == cfg
    assert said(capsys) == ""


def test_a_tiny_store_gets_fitted_defaults_and_says_so(capsys):
    # 35 photos x 245 tokens of a d=1280 layer: the defaults were 20,480 latents and 2 steps of 4,096
    cfg = TrainConfig.build(store="s", out="o")
    fitted = plan(cfg, FakeView(35 * 245, 35), d=1280)
    out = said(capsys)
    assert fitted.batch_size == 256 and "--batch-size 256" in out
    assert fitted.training_tokens >= 500 * 256 and "passes" in out
    assert fitted.saes[0].d_sae == 128 and "128 latents, not 20480 (x16) and k 8, not 32" in out
    assert "only 35 training images" in out and "more latents (128) than the store has training images (35)" in out
    assert fitted.saes[0].label() == "topk-k8-s128", "the name says the width and k it has"


def test_a_k_as_wide_as_the_sae_is_refused_and_a_dense_one_warned_about(capsys):
    """k = 32 of 32 latents (the default k on a narrow SAE) is a dense code, not a sparse one."""
    dense = TrainConfig.build(store="s", out="o", batch_size=256, training_tokens=256 * 600, saes=[dict(arch="batchtopk", d_sae=32)])
    with pytest.raises(VisaeError, match=r"batchtopk-k32-s32 keeps k=32 of its 32 latents: every latent fires on every token"):
        plan(dense, FakeView(100_000, 5_000), d=16)
    half = dense.model_copy(update={"saes": [dense.saes[0].model_copy(update={"k": 12})]})
    assert plan(half, FakeView(100_000, 5_000), d=16) == half
    assert "keeps k=12 of 32 latents per token: hardly sparse (use --k 2" in said(capsys)
    assert plan(TrainConfig.build(store="s", out="o", saes=[dict(arch="relu", d_sae=32)], batch_size=256,
                                  training_tokens=256 * 600), FakeView(100_000, 5_000), d=16)  # no k: no such check


def test_explicit_settings_are_kept_but_warned_about(capsys):
    cfg = TrainConfig.build(store="s", out="o", batch_size=1024, training_tokens=1024 * 50,
                            saes=[dict(arch="topk", k=8, d_sae=4096)])  # fmt: skip
    assert plan(cfg, FakeView(100_000, 5_000), d=64) == cfg
    out = said(capsys)
    assert "only 50 optimiser steps" in out and "24.4 distinct training tokens per latent" in out


def test_meaningless_runs_are_refused_unless_forced(capsys):
    cfg = TrainConfig.build(store="s", out="o", batch_size=4096, training_tokens=8192,
                            saes=[dict(arch="topk", k=8, d_sae=20_480)])  # fmt: skip
    with pytest.raises(VisaeError, match=r"only 2 optimiser step\(s\).*20,480 latents but trains on 8,192 tokens.*--force"):
        plan(cfg, FakeView(8_575, 35), d=1280)
    forced = cfg.model_copy(update={"force": True})
    assert plan(forced, FakeView(8_575, 35), d=1280) == forced


def test_an_in_memory_source_has_no_image_count(capsys):
    class Tensorish:
        def __len__(self):
            return 50_000

    cfg = TrainConfig.build(store="s", out="o", saes=[SAEHparams(arch="topk", k=4, d_sae=64)])
    fitted = plan(cfg, Tensorish(), d=16)
    assert fitted.batch_size == 256 and "training images" not in said(capsys)
