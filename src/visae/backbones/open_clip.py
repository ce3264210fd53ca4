"""``open_clip:ARCH[:PRETRAINED]``: the vision tower of an OpenCLIP model.

``open_clip:ViT-B-32:laion2b_s34b_b79k`` (a pretrained tag, from the local cache),
``open_clip:ViT-B-32:/path/to/checkpoint.pt`` (a local file), or
``open_clip:local-dir:/path/to/folder`` / ``open_clip:hf-hub:org/repo`` (a folder with
``open_clip_config.json`` and weights). Only ``model.visual`` is kept; preprocessing comes
from its ``preprocess_cfg``. open_clip is an optional extra (``pip install 'visae[open_clip]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from visae.backbones.base import BACKBONES, Backbone
from visae.backbones.optional import optional_import
from visae.data.transforms import Preprocess
from visae.errors import VisaeError, did_you_mean
from visae.progress import warn

SCHEMAS = ("local-dir:", "hf-hub:")
"""open_clip model names that carry their own config and weights (a PRETRAINED part is not used)."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@BACKBONES.register("open_clip")
def load_open_clip(rest: str, *, random_init: bool = False, allow_position_match: bool = False) -> Backbone:
    """Load ``open_clip:ARCH[:PRETRAINED]`` (open_clip matches a checkpoint by name only: ``allow_position_match`` is unused)."""
    oc = optional_import("open_clip", extra="open_clip")
    arch, pretrained = _split(oc, rest, random_init)
    try:
        torch.manual_seed(0)
        model = oc.create_model(
            arch, pretrained=pretrained, load_weights=not random_init, pretrained_text=False, device="cpu"
        )
    except (RuntimeError, ValueError, OSError) as e:
        raise VisaeError(
            f"open_clip could not load '{rest}' ({str(e).splitlines()[0]})",
            "a pretrained tag needs its weights in the local cache (there may be no network); "
            "give a local checkpoint path (open_clip:ARCH:/path.pt) or --random-init",
        ) from None
    visual = model.visual
    del model  # drop the text tower
    return Backbone(
        spec=f"open_clip:{rest}",
        family="open_clip",
        model=visual,
        preprocess=_preprocess(visual),
        n_cls=_n_cls(visual),
        n_registers=int(getattr(getattr(visual, "trunk", None), "num_reg_tokens", 0) or 0),
        patch_size=_patch_size(visual),
    )


def _split(oc: Any, rest: str, random_init: bool) -> tuple[str, str | None]:
    """(open_clip model name, pretrained tag or path or None), validated."""
    if rest.startswith(SCHEMAS):
        schema, where = rest.split(":", 1)
        folder = Path(where).expanduser()
        if schema == "local-dir" and not folder.is_dir():
            raise VisaeError(f"open_clip:{rest}: no such directory", "give a folder with open_clip_config.json and weights")
        if schema == "local-dir" and not random_init and not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
            raise VisaeError(f"open_clip:{rest}: no weights (.safetensors/.bin/.pth) in {folder}", "add them, or pass --random-init")
        return rest, None
    arch, sep, pretrained = rest.partition(":")
    if arch not in oc.list_models():
        raise VisaeError(f"open_clip has no model '{arch}'", did_you_mean(arch, oc.list_models()) or "open_clip.list_models() lists them")
    if random_init:
        return arch, None
    if not pretrained:
        tags = ", ".join(oc.list_pretrained_tags_by_model(arch)) or "none"
        raise VisaeError(
            f"open_clip:{arch} names no weights",
            f"write open_clip:{arch}:TAG (tags: {tags}) or open_clip:{arch}:/path/to/checkpoint, or pass --random-init",
        )
    return arch, pretrained


def _preprocess(visual: torch.nn.Module) -> Preprocess:
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", getattr(visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    if cfg.get("resize_mode", "shortest") != "shortest":
        warn(f"open_clip resize mode '{cfg['resize_mode']}' is approximated by resize-shorter-side + centre crop")
    kw: dict[str, Any] = {"size": size, "crop_pct": 1.0}
    if cfg.get("mean") is not None:
        kw["mean"], kw["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    if cfg.get("interpolation") in ("bilinear", "bicubic", "nearest"):
        kw["resample"] = cfg["interpolation"]
    return Preprocess(**kw)


def _n_cls(visual: torch.nn.Module) -> int | None:
    """1 for OpenCLIP's own ViT (class embedding), timm trunks say theirs, CNN towers have none."""
    if hasattr(visual, "class_embedding"):
        return 1
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and getattr(trunk, "num_prefix_tokens", None) is not None:
        return int(trunk.num_prefix_tokens) - int(getattr(trunk, "num_reg_tokens", 0) or 0)
    return 0 if _patch_size(visual) is None else None


def _patch_size(visual: torch.nn.Module) -> int | None:
    patch = getattr(visual, "patch_size", None)
    if patch is None:
        patch = getattr(getattr(getattr(visual, "trunk", None), "patch_embed", None), "patch_size", None)
    if patch is None:
        return None
    return int(patch[0] if isinstance(patch, (tuple, list)) else patch)
