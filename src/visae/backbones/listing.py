"""The ``visae layers`` stage: which modules of a model can be captured, with shapes and layouts."""

from __future__ import annotations

from pydantic import Field

from visae.backbones.base import LayerInfo, load_backbone
from visae.config import Config
from visae.errors import VisaeError

MAX_SIZE = 4096
"""Largest --size of the dummy forward: far above any vision model's input, well below what exhausts memory."""


class LayersConfig(Config):
    """What ``list_layers`` reads."""

    model: str
    """Backbone spec: hf:REPO_OR_PATH, timm:NAME[:CHECKPOINT], open_clip:ARCH[:PRETRAINED], torchvision:NAME."""
    random_init: bool = False
    """Build the architecture with random weights on purpose (when no weights are available locally)."""
    allow_position_match: bool = False
    """Load a checkpoint whose tensor names differ from the model's by position (refused otherwise)."""
    filter: str | None = None
    """Only list layers whose name contains this string."""
    size: int | None = Field(None, ge=1, le=MAX_SIZE)
    """Input side in pixels for the dummy forward, 1 .. 4096 (default: the model's own preprocessing size)."""
    device: str = "cpu"
    """Torch device to run the dummy forward on."""


def list_layers(cfg: LayersConfig) -> tuple[str, int, list[LayerInfo]]:
    """(family, input size, hookable layers matching the filter, in forward order)."""
    overrides = {"size": cfg.size} if cfg.size is not None else None
    bb = load_backbone(cfg.model, random_init=cfg.random_init, device=cfg.device, preprocess_overrides=overrides,
                       allow_position_match=cfg.allow_position_match)  # fmt: skip
    try:
        layers = bb.layers()
    except RuntimeError as e:  # e.g. an input smaller than the model's downsampling, or too big for memory
        if cfg.size is None:
            raise
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise VisaeError(f"{cfg.model} cannot run on a {cfg.size}x{cfg.size} input ({reason})",
                         "choose another --size, or leave it out to use the model's own") from None  # fmt: skip
    if cfg.filter:
        matching = [layer for layer in layers if cfg.filter in layer.name]
        if not matching:
            raise VisaeError(f"no layer name of {cfg.model} contains '{cfg.filter}'", f"run without --filter to see all {len(layers)} layers")
        layers = matching
    return bb.family, bb.preprocess.size, layers
