"""A tiny deterministic stand-in Backbone and a tiny image folder, for the extract tests.

The fake has the Backbone methods the extract stage uses (preprocess, resolve_layer,
layout, capture) over a small random conv net, so the tests do not depend on model
downloads. Images that are pure white produce NaN activations (to test the NaN path).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from visae.backbones.tokens import TokenLayout
from visae.data.transforms import Preprocess
from visae.errors import VisaeError, did_you_mean

SIZE = 16


class FakeBackbone:
    spec = "fake:tiny"

    def __init__(self, *, seed: int = 0, delay: float = 0.0, fail_after: int | None = None):
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)  # 16 -> 8
        self.conv2 = torch.nn.Conv2d(6, 5, 3, stride=2, padding=1)  # 8 -> 4
        self.embed = torch.nn.Linear(5, 7)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 7))
        self.preprocess = Preprocess(size=SIZE, crop_pct=1.0)
        self.delay = delay
        self.fail_after = fail_after
        self.calls = 0
        self._layouts = {
            "conv1": TokenLayout("spatial", 6, (8, 8)),
            "conv2": TokenLayout("spatial", 5, (4, 4)),
            "seq": TokenLayout("sequence", 7, (4, 4), n_cls=1),
        }

    def resolve_layer(self, name: str) -> str:
        if name not in self._layouts:
            raise VisaeError(f"unknown layer '{name}'", did_you_mean(name, self._layouts) or "known: conv1, conv2, seq")
        return name

    def layout(self, layer: str) -> TokenLayout:
        return self._layouts[layer]

    def capture(self, pixels_BCHW: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("injected failure")
        time.sleep(self.delay)
        white_B = (pixels_BCHW.amin(dim=(1, 2, 3)) > 2.0).view(-1, 1, 1, 1)
        h1 = torch.relu(self.conv1(pixels_BCHW))
        h2 = self.conv2(h1)
        h2 = torch.where(white_B, torch.full_like(h2, float("nan")), h2)
        seq = self.embed(h2.flatten(2).transpose(1, 2))
        seq = torch.cat([self.cls.expand(len(seq), -1, -1), seq], dim=1)
        outs = {"conv1": h1, "conv2": h2, "seq": seq}
        return {name: outs[name] for name in layers}


def make_folder(root: Path, n_per_class: int = 10, classes: tuple[str, ...] = ("a", "b"), white: int = 0, corrupt: int = 0) -> Path:
    """root/<class>/img_<k>.png random 16x16 images; ``white`` all-white, ``corrupt`` broken files."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            Image.fromarray(rng.integers(0, 200, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / c / f"img_{k:03d}.png")
    for k in range(white):
        Image.fromarray(np.full((SIZE, SIZE, 3), 255, np.uint8)).save(root / classes[0] / f"img_{k:03d}.png")
    for k in range(corrupt):
        (root / classes[-1] / f"img_{n_per_class - 1 - k:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root
