"""Fixtures for the backbone tests: tiny random-init transformers models saved locally, and
the tests-only torchvision stand-in that lets timm / open_clip import (see
torchvision_standin/README.md).

Every model is built from a small config with ``save_pretrained`` into a temporary
directory, so ``hf:PATH`` exercises the real loading code without any download.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

STANDIN = str(Path(__file__).parent / "torchvision_standin")
OPTIONAL_TOPS = ("torchvision", "timm", "open_clip")

# A ViT-like tower: 32x32 input, 8x8 patches -> a 4x4 grid.
TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)


def _save(model, processor, path: Path) -> Path:
    model.save_pretrained(path)
    if processor is not None:
        processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def transformers_quiet():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


class _Built(dict):
    """name -> directory, each model built and saved the first time a test asks for it."""

    def __init__(self, root: Path, builders: dict):
        super().__init__()
        self.root, self.builders = root, builders

    def __missing__(self, name: str) -> Path:
        torch.manual_seed(0)
        model, processor = self.builders[name]()
        self[name] = _save(model, processor, self.root / name)
        return self[name]


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory, transformers_quiet) -> dict[str, Path]:
    """name -> save_pretrained directory of a tiny random model (+ its image processor), built lazily."""
    T = transformers_quiet
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=64,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    clip_pp = lambda: T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})  # noqa: E731
    siglip_pp = lambda: T.SiglipImageProcessor(size={"height": 32, "width": 32})  # noqa: E731
    convnext = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], image_size=64, num_labels=3,
                    id2label={0: "cessna", 1: "boeing", 2: "airbus"})
    builders = {
        "vit": lambda: (T.ViTModel(T.ViTConfig(**TINY_VIT)), T.ViTImageProcessor(size={"height": 32, "width": 32})),
        "dinov2_reg": lambda: (
            T.Dinov2WithRegistersModel(T.Dinov2WithRegistersConfig(**TINY_VIT, num_register_tokens=4)),
            T.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, do_center_crop=True),
        ),
        "clip_full": lambda: (T.CLIPModel(T.CLIPConfig(vision_config=TINY_VIT, text_config=text)), clip_pp()),
        "clip_vision": lambda: (T.CLIPVisionModel(T.CLIPVisionConfig(**TINY_VIT)), clip_pp()),
        "siglip_full": lambda: (T.SiglipModel(T.SiglipConfig(vision_config=TINY_VIT, text_config=text)), siglip_pp()),
        "convnext_cls": lambda: (
            T.ConvNextForImageClassification(T.ConvNextConfig(**convnext)),
            T.ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875, image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6]),
        ),
    }
    return _Built(tmp_path_factory.mktemp("hf"), builders)


@pytest.fixture(scope="module")
def standin_torchvision():
    """Import timm / open_clip against the tests-only torchvision stand-in, then forget them again.

    The stand-in is on sys.path only while the requesting test module runs; modules imported
    meanwhile are dropped afterwards so no other test sees timm through it.
    """
    before = set(sys.modules)
    sys.path.insert(0, STANDIN)
    try:
        yield
    finally:
        sys.path.remove(STANDIN)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in OPTIONAL_TOPS:
                del sys.modules[name]
