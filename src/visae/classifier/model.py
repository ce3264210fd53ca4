"""Build, initialise, save and load the classifier (a Hugging Face image classifier).

A classifier directory is a plain ``save_pretrained`` dir (config.json with
id2label/label2id, model.safetensors, preprocessor_config.json) plus visae's own
``visae_classifier.json`` and marker, so both ``AutoModelForImageClassification`` and
visae's ``hf:DIR`` backbone spec load it without visae-specific code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visae.artifact import read_marker
from visae.atomic import file_mode
from visae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from visae.errors import VisaeError

KIND = "classifier"
META = "visae_classifier.json"
DEFAULT_SIZE = 64


def build_random(cfg: Any, class_names: list[str], size: int) -> nn.Module:
    """A randomly initialised ConvNeXt sized by ``cfg`` (patch_size, hidden_sizes, depths)."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    grid = size // cfg.patch_size // 2 ** (len(cfg.hidden_sizes) - 1)
    if grid < 1:
        raise VisaeError(
            f"a {size} px input leaves no spatial map after patch {cfg.patch_size} and {len(cfg.hidden_sizes)} stages",
            "use a larger --size or fewer stages",
        )
    config = ConvNextConfig(
        patch_size=cfg.patch_size,
        num_stages=len(cfg.hidden_sizes),
        hidden_sizes=list(cfg.hidden_sizes),
        depths=list(cfg.depths),
        drop_path_rate=cfg.drop_path_rate,
        layer_scale_init_value=cfg.layer_scale_init,
        image_size=size,
        **_label_maps(class_names),
    )
    torch.manual_seed(cfg.seed)
    model = ConvNextForImageClassification(config)
    if cfg.weight_init == "torch":
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()  # Kaiming-uniform weights, fan-in-scaled uniform biases
    return model


def _label_maps(class_names: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(class_names),
        "id2label": {i: n for i, n in enumerate(class_names)},
        "label2id": {n: i for i, n in enumerate(class_names)},
    }


def resolve_init(spec: str) -> tuple[str, bool]:
    """``'hf:REPO_OR_PATH'`` (or a bare local path) -> (name or path, is_local_dir)."""
    target = spec[3:] if spec.lower().startswith("hf:") else spec
    if not target:
        raise VisaeError(f"--init '{spec}' names no checkpoint", "write hf:facebook/convnext-tiny-224 or hf:PATH")
    if Path(target).expanduser().is_dir():
        return str(Path(target).expanduser()), True
    if not spec.lower().startswith("hf:") or target.startswith((".", "/", "~")) or target.count("/") > 1:
        raise VisaeError(f"--init {target}: no such directory", "pass a classifier dir or hf:ORG/NAME of a cached hub model")
    return target, False


def load_init(spec: str, class_names: list[str], size: int | None) -> tuple[nn.Module, Preprocess]:
    """A pretrained image classifier with a new head for ``class_names``, and its preprocessing."""
    from transformers import AutoModelForImageClassification

    target, local = resolve_init(spec)
    if local and (marker := read_marker(target)) is not None:
        _check_complete(Path(target), marker, "--init")
    kwargs = dict(ignore_mismatched_sizes=True, **_label_maps(class_names))
    model = _from_pretrained(AutoModelForImageClassification, target, local, **kwargs)
    return model, _init_preprocess(target, local, size)


def _from_pretrained(cls: Any, target: str, local: bool, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` from disk or the HF cache first; the hub only when online."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" notice is expected here
    hf_logging.disable_progress_bar()
    try:
        try:
            return cls.from_pretrained(target, local_files_only=True, **kwargs)
        except OSError:
            if local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
                raise
            return cls.from_pretrained(target, **kwargs)
    except (OSError, ValueError) as e:
        where = "in that directory" if local else "in the Hugging Face cache, and it could not be downloaded"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VisaeError(
            f"cannot load a {cls.__name__.removeprefix('Auto')} from '{target}' {where} ({first[:160]})",
            "its files are damaged: train it again (`visae classifier train ... --force`) or pass another "
            "save_pretrained dir" if local else
            "download it where there is internet (huggingface-cli download ORG/NAME) or pass a local save_pretrained dir",
        ) from None
    except Exception as e:  # safetensors / torch errors of a torn weights file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VisaeError(
            f"cannot read the weights of '{target}' ({type(e).__name__}: {first[:160]})",
            "the weights file is damaged: train the classifier again (`visae classifier train ... --force`) or "
            "restore the file",
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _init_preprocess(target: str, local: bool, size: int | None) -> Preprocess:
    """The checkpoint's own normalisation (mean/std/crop_pct/size); ``size`` overrides its size."""
    meta_file = Path(target) / META
    if local and meta_file.is_file():
        _, pre = _read_meta(Path(target))
        return pre.model_copy(update={"size": size}) if size else pre
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(target, local_files_only=True)
    except (OSError, ValueError):
        return Preprocess(size=size or 224, crop_pct=1.0)
    side = _processor_size(getattr(proc, "size", None))
    return Preprocess(
        size=size or side or 224,
        crop_pct=float(getattr(proc, "crop_pct", None) or 1.0),
        mean=tuple(getattr(proc, "image_mean", None) or IMAGENET_MEAN),
        std=tuple(getattr(proc, "image_std", None) or IMAGENET_STD),
    )


def _processor_size(size: Any) -> int | None:
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    return get("shortest_edge") or get("height")


def save_classifier(out: Path, model: nn.Module, preprocess: Preprocess) -> None:
    """``save_pretrained`` the model and a matching ``ConvNextImageProcessor`` into ``out``.

    The files are written into a hidden temporary dir inside ``out`` and moved in one by
    one, so a crash never leaves a half-written weights file under its final name.
    """
    from transformers import ConvNextImageProcessorPil

    processor = ConvNextImageProcessorPil(
        size={"shortest_edge": preprocess.size},
        crop_pct=preprocess.crop_pct,
        image_mean=list(preprocess.mean),
        image_std=list(preprocess.std),
        resample={"nearest": 0, "bilinear": 2, "bicubic": 3}[preprocess.resample],
    )
    from transformers.utils import logging as hf_logging

    model = model.to(memory_format=torch.contiguous_format)
    tmp = Path(tempfile.mkdtemp(prefix=".save-", suffix=".tmp", dir=out))
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for f in sorted(tmp.iterdir()):
            os.chmod(f, file_mode())  # safetensors writes 0600: give the files the user's usual mode
            os.replace(f, out / f.name)
    finally:
        hf_logging.enable_progress_bar()
        shutil.rmtree(tmp, ignore_errors=True)


def load_classifier(path: str | Path, flag: str = "--model") -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """A classifier dir written by ``train_classifier`` -> (model in eval mode, preprocessing, metadata)."""
    from transformers import AutoModelForImageClassification

    path = Path(path)
    if not path.is_dir():
        raise VisaeError(f"{flag} {path}: no such directory", "train one with `visae classifier train`")
    marker = read_marker(path)
    if marker is None or marker.get("kind") != KIND:
        what = f"a visae {marker.get('kind')}" if marker else "not a visae artifact"
        raise VisaeError(f"{flag} {path} is {what}, not a classifier", "train one with `visae classifier train`")
    _check_complete(path, marker, flag)
    meta, preprocess = _read_meta(path)
    model = _from_pretrained(AutoModelForImageClassification, str(path), True)
    return model.eval(), preprocess, meta


def _read_meta(path: Path) -> tuple[dict[str, Any], Preprocess]:
    """``visae_classifier.json`` of a classifier dir and the preprocessing it records."""
    try:
        meta = json.loads((path / META).read_text())
        return meta, Preprocess(**meta["preprocess"])
    except (OSError, ValueError, KeyError, TypeError) as e:  # JSONDecodeError and pydantic's errors are ValueErrors
        why = "it is missing" if isinstance(e, FileNotFoundError) else f"{type(e).__name__}: {str(e).strip()[:160]}"
        raise VisaeError(
            f"cannot read {path / META} ({why.splitlines()[0]})",
            "the classifier dir is damaged: train it again with `visae classifier train ... --force`",
        ) from None


def _check_complete(path: Path, marker: dict[str, Any], flag: str) -> None:
    if marker.get("kind") == KIND and not marker.get("complete", False):
        raise VisaeError(
            f"{flag} {path} is an unfinished classifier run",
            f"finish it with `visae classifier train --out {path} --resume ...` (or start over with --force)",
        )
