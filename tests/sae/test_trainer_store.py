"""Training on a real store: token kinds, held-out images, the dead-latent window."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visae.sae.train_config import TrainConfig
from visae.sae.trainer import dead_window, read_summary, train
from visae.store import Store, StoreMeta, StoreWriter
from visae.store.format import INDEX_DTYPE


@pytest.fixture(scope="module")
def vit_store(tmp_path_factory):
    """200 images of a ViT-like layer (d=8): a CLS token far from the 4 patch tokens of each image."""
    path = tmp_path_factory.mktemp("vit") / "store"
    meta = StoreMeta(backbone="test:vit", layer="blocks.1", tokens="all", preprocess={}, dataset="test:none",
                     layout={"kind": "sequence", "dim": 8, "grid": [2, 2], "n_cls": 1, "n_registers": 0},
                     split="train", dtype="fp32", d=8, shard_tokens=256, planned_images=200, checksum="sha256",
                     config={})  # fmt: skip
    w = StoreWriter.create(path, meta)
    g = torch.Generator().manual_seed(0)
    for i in range(200):
        rows = np.zeros(5, dtype=INDEX_DTYPE)
        rows["image"], rows["label"], rows["kind"] = i, i % 4, [1, 0, 0, 0, 0]
        acts = torch.randn(5, 8, generator=g)
        acts[0] += 50.0  # CLS tokens live elsewhere
        w.add(acts, rows, {i: f"img{i}"})
    w.close()
    return Store(path)


def _cfg(store, out, **kw):
    base = dict(store=str(store.path), out=str(out), batch_size=64, training_tokens=64 * 10, log_every=5,
                saes=[dict(arch="topk", k=2, d_sae=16)], median_sample=256)  # fmt: skip
    return TrainConfig.build(**{**base, **kw})


def test_token_kinds_and_held_out_images(vit_store, tmp_path):
    run = train(_cfg(vit_store, tmp_path / "patch"))  # default on a store of several kinds: patches
    summary = read_summary(run.path)
    held = summary["saes"]["topk-k2-s16"]["heldout"]
    assert held["eval_tokens"] == 10 * 4, "5% of 200 images held out, 4 patch tokens each"
    cfg = json.loads((run.path / "saes" / "topk-k2-s16" / "cfg.json").read_text())
    assert abs(cfg["visae"]["normalization"]["mean_norm"] - float(vit_store.mean_D.norm())) > 1, "patch statistics"
    cls = train(_cfg(vit_store, tmp_path / "cls", tokens="cls", batch_size=16, training_tokens=16 * 10))
    assert read_summary(cls.path)["saes"]["topk-k2-s16"]["heldout"]["eval_tokens"] == 10
    # the saved SAE takes raw CLS tokens (around 50), the patch SAE raw patches (around 0)
    assert float(cls.load().b_dec.detach().mean()) > 40 and abs(float(run.load().b_dec.detach().mean())) < 5


def test_no_holdout_says_so(vit_store, tmp_path):
    run = train(_cfg(vit_store, tmp_path / "r", holdout=0))
    assert read_summary(run.path)["saes"]["topk-k2-s16"]["heldout"] is None
    assert all(r["split"] == "train" for r in run.metrics())


def test_eval_store_must_match_the_layer(vit_store, tmp_path):
    from visae.errors import VisaeError

    other = tmp_path / "other"
    meta = vit_store.meta.model_copy(update={"layer": "blocks.2", "shards": [], "n_tokens": 0, "n_images": 0,
                                             "complete": False})  # fmt: skip
    w = StoreWriter.create(other, meta)
    rows = np.zeros(5, dtype=INDEX_DTYPE)
    rows["kind"] = [1, 0, 0, 0, 0]
    w.add(torch.randn(5, 8), rows, {0: "x"})
    w.close()
    with pytest.raises(VisaeError, match="layer 'blocks.2'"):
        train(_cfg(vit_store, tmp_path / "e", eval_store=str(other)))


def test_dead_window_scales_with_the_run_and_warns_when_too_long(capsys, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "0")
    cfg = TrainConfig.build(store="-", out="-", batch_size=100)
    assert dead_window(cfg, 1_000_000) == 100_000
    assert dead_window(cfg.model_copy(update={"dead_fraction": 0.5}), 1_000_000) == 500_000
    capsys.readouterr()
    assert dead_window(cfg.model_copy(update={"dead_tokens": 2_000_000}), 1_000_000) == 2_000_000
    assert "no latent can be counted dead" in " ".join(capsys.readouterr().err.split())
