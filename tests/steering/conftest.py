"""Tiny random-init transformers models saved locally (a ConvNeXt classifier, a ViT with CLS, a
Dinov2 with registers), loaded through the real ``hf:DIR`` loader, and random SAEs of a layer's width."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from visae.backbones.base import load_backbone

from run_fixture import synth_run  # noqa: F401  (a small real run on the synthetic aircraft)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # cli_helpers: the real command line, in-process

TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    T.logging.disable_progress_bar()
    convnext = dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32, num_labels=3, layer_scale_init_value=1.0)
    builders = {
        "convnext": lambda: (T.ConvNextForImageClassification(T.ConvNextConfig(**convnext)),
                             T.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0)),
        "vit": lambda: (T.ViTModel(T.ViTConfig(**TINY_VIT)), T.ViTImageProcessor(size={"height": 32, "width": 32})),
        "vit_classifier": lambda: (T.ViTForImageClassification(T.ViTConfig(**TINY_VIT, num_labels=5)),
                                   T.ViTImageProcessor(size={"height": 32, "width": 32})),
        "dinov2_reg": lambda: (T.Dinov2WithRegistersModel(T.Dinov2WithRegistersConfig(**TINY_VIT, num_register_tokens=4)),
                               T.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    }  # fmt: skip
    root = tmp_path_factory.mktemp("steer_models")
    dirs = {}
    for name, build in builders.items():
        torch.manual_seed(0)
        model, processor = build()
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


@pytest.fixture(scope="session")
def backbones(model_dirs):
    return {name: load_backbone(f"hf:{path}") for name, path in model_dirs.items()}


@pytest.fixture
def pixels_BCHW() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
