"""``hf:REPO_OR_PATH``: vision models from transformers.

ViT, DINOv2 (with or without registers), ConvNeXt (base models and image classifiers,
including visae's own classifier directories), and the vision towers of CLIP and SigLIP (a
full CLIPModel / SiglipModel checkpoint loads only its vision tower). Other transformers
vision models load through ``AutoModel`` and have their CLS tokens counted from shapes.

Weights come from a local ``save_pretrained`` directory or the Hugging Face cache; the hub
is only asked when the machine is online. ``random_init`` builds the architecture from a
local config (or a transformers model type name, ``hf:vit``) with random weights.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from visae.backbones.base import BACKBONES, Backbone
from visae.data.transforms import Preprocess
from visae.errors import VisaeError
from visae.progress import warn
from visae.registry import relative_note

CLS_TOKENS = {
    "vit": 1,
    "deit": 1,
    "dinov2": 1,
    "dinov2_with_registers": 1,
    "clip_vision_model": 1,
    "siglip_vision_model": 0,  # SigLIP pools with an attention head, it has no CLS token
    "convnext": 0,
    "convnextv2": 0,
}
"""CLS tokens of each model type's sequences; types not listed have them counted from shapes."""

VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}
"""Multimodal model types -> the transformers class that loads just their vision tower."""

RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
"""PIL resample codes of image processors -> Preprocess.resample (others map to bicubic)."""


@BACKBONES.register("hf")
def load_hf(rest: str, *, random_init: bool = False, allow_position_match: bool = False) -> Backbone:
    """Load ``hf:REPO_OR_PATH`` (transformers matches weights by name only: ``allow_position_match`` is unused)."""
    import transformers

    with _quiet(transformers):
        config, source = _find_config(transformers, rest, random_init)
        cls_name, config = _model_class(config)
        cls = getattr(transformers, cls_name)
        model = _build(cls, config) if random_init else _load_weights(cls, source, rest)
    cfg = model.config
    patch = getattr(cfg, "patch_size", None)
    id2label = getattr(cfg, "id2label", None) if cls_name == "AutoModelForImageClassification" else None
    return Backbone(
        spec=f"hf:{rest}",
        family="hf",
        model=model,
        preprocess=_preprocess(transformers, source, cfg),
        call=_caller(model),
        n_cls=CLS_TOKENS.get(cfg.model_type),
        n_registers=int(getattr(cfg, "num_register_tokens", 0) or 0),
        patch_size=int(patch[0] if isinstance(patch, (tuple, list)) else patch) if patch else None,
        class_names=[id2label[i] for i in sorted(id2label)] if id2label else None,
    )


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Silence transformers' load reports and progress bars (text-tower keys are expected to be unused)."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _offline() -> bool:
    """True when the hub must not be asked: offline mode is set, or its host cannot be reached."""
    from huggingface_hub import constants

    env = any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE) or not _reachable(constants.ENDPOINT)


@functools.cache
def _reachable(endpoint: str) -> bool:
    """One quick TCP connect, so an offline machine fails at once instead of after the hub client's retries."""
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def _no_weights(rest: str, why: str) -> VisaeError:
    return VisaeError(
        f"no local weights found for hf:{rest} ({why})",
        "point hf: at a save_pretrained directory or download the model into the Hugging Face cache "
        "where there is network; --random-init builds the architecture from its config with random weights "
        "on purpose (needs the config.json locally, or a model type name such as hf:vit)",
    )


def _find_config(transformers: Any, rest: str, random_init: bool) -> tuple[Any, str | None]:
    """(config, where to load weights and preprocessing from: a directory, a repo id, or None)."""
    path = Path(rest).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise VisaeError(f"{path} has no config.json", "point hf: at a directory written by save_pretrained")
        try:
            return transformers.AutoConfig.from_pretrained(path), str(path)
        except (OSError, ValueError, KeyError, TypeError) as e:  # not JSON, no or an unknown model_type, bad fields
            raise VisaeError(
                f"cannot read {path / 'config.json'} ({_first_line(e)})",
                f"re-create it with save_pretrained, or upgrade transformers ({transformers.__version__}) if the "
                "model type is newer than it",
            ) from None
    if path.exists() or rest.startswith(("/", "./", "../", "~")):
        raise VisaeError(f"hf:{rest}: no such model directory", "give a directory written by save_pretrained, or a hub repo id")
    for local_only in (True, False):
        if not local_only and _offline():
            break
        try:
            return transformers.AutoConfig.from_pretrained(rest, local_files_only=local_only), rest
        except (OSError, ValueError):
            continue
    if random_init and rest in transformers.CONFIG_MAPPING:
        return transformers.AutoConfig.for_model(rest), None
    why = "not a directory, not in the Hugging Face cache" + ("" if _offline() else ", and the hub did not answer")
    looks_local = rest.count("/") >= 2 or Path(rest.split("/")[0]).exists()  # not a hub id "org/name"
    raise _no_weights(rest, why + (relative_note(rest) if looks_local else ""))


def _model_class(config: Any) -> tuple[str, Any]:
    """(transformers class name, the config it takes) for a checkpoint's config."""
    tower = VISION_TOWERS.get(config.model_type)
    if tower:
        return tower, config.vision_config
    if any(a.endswith("ForImageClassification") for a in (getattr(config, "architectures", None) or [])):
        return "AutoModelForImageClassification", config
    return "AutoModel", config


def _build(cls: Any, config: Any) -> torch.nn.Module:
    """The architecture with random weights."""
    torch.manual_seed(0)
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(config)


def _load_weights(cls: Any, source: str | None, rest: str) -> torch.nn.Module:
    local_only = source is not None and (Path(source).is_dir() or _offline())
    for only in dict.fromkeys((True, local_only)):  # the cache first, then the hub when allowed
        try:
            model, info = cls.from_pretrained(source, local_files_only=only, output_loading_info=True)
            break
        except OSError as e:
            error = e
        except Exception as e:  # safetensors / torch errors of a torn file, size mismatches of a wrong one
            raise VisaeError(
                f"cannot read the weights of hf:{rest} ({type(e).__name__}: {_first_line(e)})",
                "the weights file is damaged or does not match config.json: save the model again (save_pretrained) "
                "or download it again; --random-init builds the architecture without weights",
            ) from None
    else:
        raise _no_weights(rest, f"{type(error).__name__}: {str(error).splitlines()[0]}")
    missing = info.get("missing_keys") or []
    if missing:
        warn(f"hf:{rest}: {len(missing)} weights are not in the checkpoint and stay random (e.g. {sorted(missing)[0]})")
    return model


def _first_line(e: BaseException) -> str:
    """The first sentence of an error's message (transformers' run on for several)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0].split(". ", 1)[0].removesuffix(".")[:240] if lines else type(e).__name__


def _caller(model: torch.nn.Module):
    """model(pixel_values=...), interpolating position embeddings when the input size is not the config's."""
    accepts = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    image_size = getattr(model.config, "image_size", None)

    def call(model: torch.nn.Module, pixels_BCHW: torch.Tensor) -> Any:
        if accepts and image_size is not None and pixels_BCHW.shape[-1] != image_size:
            return model(pixel_values=pixels_BCHW, interpolate_pos_encoding=True)
        return model(pixel_values=pixels_BCHW)

    return call


def _preprocess(transformers: Any, source: str | None, cfg: Any) -> Preprocess:
    """Preprocess from the checkpoint's image processor, or defaults at the config's image size."""
    processor = None
    if source is not None:
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(
                source, local_files_only=Path(source).is_dir() or _offline()
            )
        except (OSError, ValueError):
            processor = None
    if processor is None:
        size = getattr(cfg, "image_size", None) or 224
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        warn(f"no image processor config found; using {size}px, ImageNet mean/std (override with preprocess options)")
        return Preprocess(size=size)
    return preprocess_from_processor(processor)


def preprocess_from_processor(processor: Any) -> Preprocess:
    """Translate a transformers image processor (resize, centre crop, crop_pct, mean/std) into Preprocess."""
    size, crop = processor.size, getattr(processor, "crop_size", None)
    resize_to = _side(size)
    if getattr(processor, "do_center_crop", False) and crop is not None:
        final = _side(crop)
        crop_pct = final / resize_to
    elif getattr(processor, "crop_pct", None) is not None:  # ConvNeXt: resize to size / crop_pct, crop size (below 384)
        final = resize_to
        crop_pct = float(processor.crop_pct) if final < 384 else 1.0
    else:
        final, crop_pct = resize_to, 1.0
    return Preprocess(
        size=final,
        crop_pct=crop_pct,
        mean=tuple(float(m) for m in processor.image_mean),
        std=tuple(float(s) for s in processor.image_std),
        resample=RESAMPLE.get(int(getattr(processor, "resample", 3)), "bicubic"),
    )


def _side(size: Any) -> int:
    """The square side of a processor size (dict or SizeDict): shortest_edge, or height (== width)."""
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    if get("shortest_edge"):
        return int(get("shortest_edge"))
    h, w = get("height"), get("width")
    if h is None:
        raise VisaeError(f"cannot read the image processor's size {size}", "pass preprocess overrides (size=...)")
    if w is not None and w != h:
        warn(f"the image processor resizes to {h}x{w}; visae uses square {h}x{h} inputs")
    return int(h)
