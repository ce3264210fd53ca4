"""A tiny real pipeline for the API tests: PNG folder -> local random-init hf ConvNeXt -> store -> SAE run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """24 random 20x20 PNGs in two classes (20 px: the 16 px model input is a real resize)."""
    root = tmp_path_factory.mktemp("data") / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for k in range(12):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / c / f"img_{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def convnext(tmp_path_factory) -> Path:
    """A random-init ConvNeXt saved as a local transformers model: layer encoder.stages.1 is a 16-d 4x4 map."""
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "convnext"
    ConvNextModel(ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=16)).save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipeline(folder, convnext, tmp_path_factory):
    """(store, run) made through the notebook API."""
    import visae

    root = tmp_path_factory.mktemp("pipeline")
    store = visae.extract(model=f"hf:{convnext}", layer="encoder.stages.1", data=f"folder:{folder}",
                          out=root / "acts", dtype="fp32", batch_size=8, device="cpu")  # fmt: skip
    run = visae.train(store=str(store.path), out=str(root / "run"), arch="topk", k=4, d_sae=32, batch_size=64,
                      training_tokens=2048, holdout=0, device="cpu")  # fmt: skip
    return store, run
