"""The ``visae layers`` stage: which modules of a model can be captured, with shapes and layouts."""

from __future__ import annotations

from visae.backbones.base import LayerInfo, load_backbone
from visae.config import Config
from visae.errors import VisaeError


class LayersConfig(Config):
    """What ``list_layers`` reads."""

    model: str
    """Backbone spec: hf:REPO_OR_PATH, timm:NAME[:CHECKPOINT], open_clip:ARCH[:PRETRAINED], torchvision:NAME."""
    random_init: bool = False
    """Build the architecture with random weights on purpose (when no weights are available locally)."""
    filter: str | None = None
    """Only list layers whose name contains this string."""
    size: int | None = None
    """Input side in pixels for the dummy forward (default: the model's own preprocessing size)."""
    device: str = "cpu"
    """Torch device to run the dummy forward on."""


def list_layers(cfg: LayersConfig) -> tuple[str, int, list[LayerInfo]]:
    """(family, input size, hookable layers matching the filter, in forward order)."""
    overrides = {"size": cfg.size} if cfg.size else None
    bb = load_backbone(cfg.model, random_init=cfg.random_init, device=cfg.device, preprocess_overrides=overrides)
    layers = bb.layers()
    if cfg.filter:
        matching = [layer for layer in layers if cfg.filter in layer.name]
        if not matching:
            raise VisaeError(f"no layer name of {cfg.model} contains '{cfg.filter}'", f"run without --filter to see all {len(layers)} layers")
        layers = matching
    return bb.family, bb.preprocess.size, layers
