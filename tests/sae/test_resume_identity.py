"""A resume reads the store its run began with: another store at the same path is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from visae.errors import VisaeError
from visae.sae.train_config import TrainConfig
from visae.sae.trainer import INPUTS_FILE, train
from visae.store import StoreMeta, StoreWriter
from visae.store.format import INDEX_DTYPE


def make_store(path, seed: int) -> None:
    """60 images of 4 tokens, d=8, layer blocks.1: the same shape whatever the seed."""
    meta = StoreMeta(backbone="test:vit", layer="blocks.1", tokens="patch", preprocess={}, dataset="test:none",
                     layout={"kind": "spatial", "dim": 8, "grid": [2, 2]}, split="train", dtype="fp32", d=8,
                     shard_tokens=64, planned_images=60, checksum="sha256", config={})  # fmt: skip
    w = StoreWriter.create(path, meta)
    g = torch.Generator().manual_seed(seed)
    for i in range(60):
        rows = np.zeros(4, dtype=INDEX_DTYPE)
        rows["image"], rows["label"] = i, i % 3
        w.add(torch.randn(4, 8, generator=g), rows, {i: f"img{i}"})
    w.close()


def test_resume_against_another_store_at_the_same_path_is_refused(tmp_path):
    store, run = tmp_path / "store", tmp_path / "run"
    make_store(store, seed=0)
    cfg = dict(store=str(store), out=str(run), batch_size=32, training_tokens=32 * 10, log_every=2,
               saes=[dict(arch="topk", k=2, d_sae=16)], median_sample=64)  # fmt: skip
    train(TrainConfig.build(**cfg))
    recorded = json.loads((run / INPUTS_FILE).read_text())["store"]
    assert recorded["layer"] == "blocks.1" and recorded["n_tokens"] == 240 and len(recorded["fingerprint"]) == 32

    train(TrainConfig.build(**cfg, resume=True))  # the same store: resumes (here: nothing left to do)
    shutil.rmtree(store)
    make_store(store, seed=1)  # same backbone, layer, size: other activations
    with pytest.raises(VisaeError, match=r"cannot resume .*: the store is not the one the run began with "
                                         r"\(its contents differ\); resume against the original store"):
        train(TrainConfig.build(**cfg, resume=True))

    (run / INPUTS_FILE).unlink()  # a run begun before visae recorded its inputs: resumed, and recorded from now on
    train(TrainConfig.build(**cfg, resume=True))
    assert json.loads((run / INPUTS_FILE).read_text())["store"]["fingerprint"] != recorded["fingerprint"]
