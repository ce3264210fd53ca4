"""``torchvision:NAME[:CHECKPOINT]``: a torchvision classification model.

``torchvision:resnet50`` loads the DEFAULT weights when they are already in the torch hub
cache (``$TORCH_HOME/hub/checkpoints``; nothing is downloaded); ``torchvision:resnet50:PATH``
loads a local state dict (by name; by position only with ``allow_position_match``, see
``weights.py``). Preprocessing comes from the weights' own transforms.
torchvision is an optional extra and must be the build made for the installed torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from visae.backbones.base import BACKBONES, Backbone
from visae.backbones.optional import optional_import
from visae.backbones.weights import load_checkpoint
from visae.data.transforms import Preprocess
from visae.errors import VisaeError, did_you_mean


@BACKBONES.register("torchvision")
def load_torchvision(rest: str, *, random_init: bool = False, allow_position_match: bool = False) -> Backbone:
    """Load ``torchvision:NAME[:CHECKPOINT]``."""
    tv = optional_import("torchvision", extra="torchvision")
    name, sep, ckpt = rest.partition(":")
    known = tv.models.list_models()
    if name not in known:
        raise VisaeError(f"torchvision has no model '{name}'", did_you_mean(name, known) or "torchvision.models.list_models() lists them")
    weights = _default_weights(tv, name)
    torch.manual_seed(0)
    model = tv.models.get_model(name, weights=None)
    match = None
    if sep and ckpt:
        match = load_checkpoint(model, ckpt, f"torchvision:{name}", allow_position=allow_position_match)
    elif not random_init:
        _load_cached(model, name, weights)
    patch = getattr(model, "patch_size", None)
    return Backbone(
        spec=f"torchvision:{rest}",
        family="torchvision",
        model=model,
        preprocess=_preprocess(weights),
        n_cls=1 if hasattr(model, "class_token") else 0,
        patch_size=int(patch) if patch else None,
        class_names=list(weights.meta["categories"]) if weights is not None and not random_init and not ckpt else None,
        checkpoint=match,
    )


def _default_weights(tv: Any, name: str) -> Any:
    try:
        return tv.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _load_cached(model: torch.nn.Module, name: str, weights: Any) -> None:
    """Load ``weights`` from the torch hub cache; never download."""
    if weights is None:
        raise VisaeError(f"torchvision:{name} has no pretrained weights", f"pass a checkpoint (torchvision:{name}:PATH) or --random-init")
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not file.is_file():
        raise VisaeError(
            f"no local weights found for torchvision:{name} (expected {file})",
            f"copy {weights.url} there, pass a checkpoint (torchvision:{name}:PATH), "
            "or pass --random-init to build it with random weights on purpose",
        )
    model.load_state_dict(weights.get_state_dict(progress=False, check_hash=False))


def _preprocess(weights: Any) -> Preprocess:
    """Resize / crop / mean / std of the weights' ImageClassification preset (defaults otherwise)."""
    if weights is None:
        return Preprocess()
    t = weights.transforms()
    crop, resize = _first(getattr(t, "crop_size", 224)), _first(getattr(t, "resize_size", None))
    interp = str(getattr(getattr(t, "interpolation", None), "value", "bilinear"))
    kw: dict[str, Any] = {"size": crop, "crop_pct": crop / resize if resize else 1.0}
    if getattr(t, "mean", None) is not None:
        kw["mean"], kw["std"] = tuple(t.mean), tuple(t.std)
    kw["resample"] = interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear"
    return Preprocess(**kw)


def _first(v: Any) -> int:
    return int(v[0]) if isinstance(v, (list, tuple)) else int(v) if v is not None else 0
