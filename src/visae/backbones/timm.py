"""``timm:NAME[:CHECKPOINT]``: any timm model, with weights from a file or the HF cache.

``timm:resnet50`` loads timm's pretrained weights when they are in the Hugging Face cache
(nothing is downloaded); ``timm:efficientnet_lite0:/path/weights.pth`` loads a local
checkpoint, by key or by another code base's names translated; a checkpoint that only lines
up by position is refused unless ``allow_position_match`` (see ``weights.py``), and the refusal
names a timm architecture of the same family that takes it by name, where one does.
Preprocessing comes from timm's data config.
timm is an optional extra (``pip install 'visae[timm]'``).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterator
from typing import Any

import torch

from visae.backbones.base import BACKBONES, Backbone
from visae.backbones.optional import optional_import
from visae.backbones.weights import load_checkpoint
from visae.data.transforms import Preprocess
from visae.errors import VisaeError, did_you_mean
from visae.progress import warn

HUB_PREFIXES = ("hf-hub:", "hf_hub:")
"""timm names that point at a hub repo and themselves contain a colon."""

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
"""Files timm looks for in a hub repo, in its order of preference."""


def split_name(rest: str) -> tuple[str, str | None]:
    """'NAME[:CHECKPOINT]' -> (NAME, CHECKPOINT or None); NAME may be 'hf-hub:org/repo'."""
    head = next((p for p in HUB_PREFIXES if rest.startswith(p)), "")
    name, sep, ckpt = rest[len(head) :].partition(":")
    return head + name, (ckpt if sep else None)


@BACKBONES.register("timm")
def load_timm(rest: str, *, random_init: bool = False, allow_position_match: bool = False) -> Backbone:
    """Load ``timm:NAME[:CHECKPOINT]``."""
    timm = optional_import("timm", extra="timm")
    name, ckpt = split_name(rest)
    if not name.startswith(HUB_PREFIXES) and not timm.is_model(name):
        hint = did_you_mean(name, timm.list_models()) or "timm.list_models() lists them"
        raise VisaeError(f"timm has no model '{name}'", hint)
    cached = None if (ckpt or random_init) else _cached_weights(timm, name)
    try:
        if cached is not None:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
        else:
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False)
    except Exception as e:  # a hub name offline, a corrupt cache file
        raise VisaeError(f"timm could not build '{name}' ({type(e).__name__}: {e})", _no_weights_hint(name)) from None
    match = None
    if ckpt:
        match = load_checkpoint(model, ckpt, f"timm:{name}", allow_position=allow_position_match,
                                alternatives=functools.partial(_alternatives, timm, name))  # fmt: skip
    elif cached is None and not random_init:
        raise VisaeError(f"no local weights found for timm:{name} (not in the Hugging Face cache)", _no_weights_hint(name))
    prefix = getattr(model, "num_prefix_tokens", None)
    n_reg = int(getattr(model, "num_reg_tokens", 0) or 0)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    return Backbone(
        spec=f"timm:{rest}",
        family="timm",
        model=model,
        preprocess=preprocess_from_data_config(timm.data.resolve_data_config({}, model=model)),
        n_cls=(int(prefix) - n_reg) if prefix is not None else (0 if patch is None else None),
        n_registers=n_reg,
        patch_size=int(patch[0]) if patch is not None else None,
        class_names=None if random_init else _class_names(timm, model),
        class_ids=None if random_init else _class_names(timm, model, ids=True),
        checkpoint=match,
    )


MAX_ALTERNATIVES = 4
"""Candidate architectures built (on the meta device, no weights) to find one that takes a checkpoint by name."""


def _alternatives(timm: Any, name: str) -> Iterator[tuple[str, torch.nn.Module]]:
    """Weightless timm models of ``name``'s family, the TensorFlow-ported twin first (``tf_NAME`` / ``NAME``)."""
    if name.startswith(HUB_PREFIXES):
        return
    base = name.split(".")[0]
    stem = base.removeprefix("tf_")
    pool = [n for n in timm.list_models(f"*{stem}*") if n != base]
    twins = [n for n in (f"tf_{stem}", stem) if n in pool]
    for n in list(dict.fromkeys(twins + difflib.get_close_matches(base, pool, n=MAX_ALTERNATIVES, cutoff=0.6)))[:MAX_ALTERNATIVES]:
        try:
            with torch.device("meta"):
                candidate = timm.create_model(n, pretrained=False)
        except Exception:  # noqa: BLE001  (a candidate that cannot be built weightless is just not suggested)
            continue
        yield f"timm:{n}", candidate


def _no_weights_hint(name: str) -> str:
    return (
        f"pass a local checkpoint (timm:{name}:/path/to/weights.pth), download the weights into the "
        "Hugging Face cache where there is network, or pass --random-init to build it with random weights on purpose"
    )


def _cached_weights(timm: Any, name: str) -> str | None:
    """The path of ``name``'s pretrained weights in the Hugging Face cache, if they are there."""
    from huggingface_hub import try_to_load_from_cache

    if name.startswith(HUB_PREFIXES):
        repo, filename = name.split(":", 1)[1], None
    else:
        cfg = timm.models.get_pretrained_cfg(name)
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        filename = getattr(cfg, "hf_hub_filename", None) if cfg is not None else None
    if not repo:
        return None
    for f in (filename,) + WEIGHT_FILES if filename else WEIGHT_FILES:
        path = try_to_load_from_cache(repo, f)
        if isinstance(path, str):
            return path
    return None


def preprocess_from_data_config(data: dict[str, Any]) -> Preprocess:
    """timm's resolved data config (input_size, crop_pct, interpolation, mean, std) -> Preprocess."""
    _, h, w = data["input_size"]
    if h != w:
        warn(f"timm's input size is {h}x{w}; visae uses square {h}x{h} inputs")
    if data.get("crop_mode", "center") != "center":
        warn(f"timm's crop mode '{data['crop_mode']}' is approximated by a centre crop")
    interp = data.get("interpolation", "bicubic")
    return Preprocess(
        size=int(h),
        crop_pct=float(data.get("crop_pct", 1.0)),
        mean=tuple(float(m) for m in data["mean"]),
        std=tuple(float(s) for s in data["std"]),
        resample=interp if interp in ("bilinear", "bicubic", "nearest") else "bicubic",
    )


def _class_names(timm: Any, model: torch.nn.Module, ids: bool = False) -> list[str] | None:
    """ImageNet class descriptions (``ids``: WordNet ids) when the model's head is an ImageNet head, else None."""
    try:
        subset = timm.data.infer_imagenet_subset(model)
        if not subset:
            return None
        info = timm.data.ImageNetInfo(subset)
        return list(info.label_names() if ids else info.label_descriptions())
    except (OSError, KeyError, ValueError):  # label files are package data; class names are a convenience
        return None
