"""End to end through the real loader: a tiny random-init ConvNeXt saved locally, loaded as hf:DIR."""

from __future__ import annotations

import numpy as np
import torch
from typer.testing import CliRunner

from visae.backbones.base import load_backbone
from visae.cli import app
from visae.store import Store


def test_cli_extract_from_a_local_hf_convnext(folder, tmp_path):
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    torch.manual_seed(0)
    model_dir = tmp_path / "convnext"
    ConvNextModel(ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=16)).save_pretrained(model_dir)
    ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0).save_pretrained(model_dir)
    out = tmp_path / "store"
    args = ["extract", "--model", f"hf:{model_dir}", "--layer", "encoder.stages.1", "--data", f"folder:{folder}",
            "--out", str(out), "--batch-size", "8", "--dtype", "fp32", "--max-images", "12", "--device", "cpu"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    store = Store(out)
    n = len(store.images["image"])  # a random 12 of the 20 images; the broken one may be among them
    assert store.meta.layout["grid"] == [4, 4] and store.d == 16 and len(store) == n * 16 and n >= 11

    bb = load_backbone(f"hf:{model_dir}")
    from visae.data.base import open_dataset

    split = open_dataset(f"folder:{folder}").split("all")
    pixels = torch.stack([bb.preprocess(split[int(i)].image_HWC) for i in store.images["image"][:3]])
    fmap_BCHW = bb.capture(pixels, ["encoder.stages.1"])["encoder.stages.1"]
    want_TD = fmap_BCHW.permute(0, 2, 3, 1).reshape(-1, 16)
    assert torch.allclose(store.get(np.arange(48)), want_TD, atol=1e-5)
