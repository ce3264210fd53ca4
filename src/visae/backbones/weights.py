"""Load a checkpoint file into a model: by key, by translated name, or (only when asked) by position.

A checkpoint written by another code base has the same tensors under other names. Where the
code base is known (``ports.py``), each name is translated to the model's and the tensors are
matched by name. Otherwise the tensors may line up by position (same count, same shape, same
kind of parameter: the last name component ``weight``, ``bias``, ``running_mean``...), but a
position match cannot tell a model that computes like the weights' own code from one that
merely has the same shapes (timm's ``efficientnet_lite0`` takes the TensorFlow Lite0 weights
and gets 13 of 20 photos right, ``tf_efficientnet_lite0`` gets 18). So it is refused unless
asked for (``allow_position``), with the count of tensors matched by name and, where one of
a few candidate architectures takes the checkpoint by name, which. A position match is only
made from a pickled state dict (``.pth``), which keeps module order (safetensors sorts by name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from visae.backbones.ports import Port, recognise
from visae.errors import VisaeError
from visae.progress import info

WRAPPERS = ("state_dict", "model", "model_state", "module", "state_dict_ema")
"""Keys under which training code often nests the weights."""

Alternatives = Callable[[], Iterable[tuple[str, torch.nn.Module]]]
"""Lazily built (spec, random-init model) candidates that might take a checkpoint by name."""

ALLOW_HINT = "pass --allow-position-match (Python: allow_position_match=True) to load it by position anyway; the loaded model is then checked"


@dataclass(frozen=True)
class CheckpointMatch:
    """How a checkpoint's tensors were matched to a model's."""

    how: Literal["key", "renamed", "position"]
    """key: the same names; renamed: another code base's names translated; position: by order."""
    checkpoint: str
    n_tensors: int
    n_by_name: int
    """Tensors matched by their (own or translated) name; the rest were matched by position."""
    convention: str | None = None
    """The other code base the checkpoint's names come from, where known."""
    fits: str | None = None
    """A spec (without the checkpoint) whose architecture takes the checkpoint by name (position matches only)."""

    @property
    def n_by_position(self) -> int:
        return self.n_tensors - self.n_by_name


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


def load_checkpoint(
    model: torch.nn.Module, path: str | Path, what: str, *, allow_position: bool = False, alternatives: Alternatives | None = None
) -> CheckpointMatch:
    """Load ``path`` into ``model`` by key, by translated name, or (``allow_position``) by aligned position.

    ``alternatives`` (tried only when the names do not match) name an architecture that takes the
    checkpoint by name, for the refusal and for the check of a position match.
    """
    src = read_state_dict(path)
    dst = model.state_dict()
    src_keys, dst_keys = _params(src), _params(dst)
    if set(src_keys) == set(dst_keys):
        _check_shapes(src, dst, dst_keys, path, what)
        model.load_state_dict({k: src[k] for k in dst_keys}, strict=False)
        return CheckpointMatch("key", str(path), len(dst_keys), len(dst_keys))
    port = recognise(src_keys)
    renamed = _renamed(port, src, model) if port is not None else None
    if renamed is not None and port is not None and port.why_not(model) is None:
        model.load_state_dict({renamed[k]: src[k] for k in src_keys}, strict=False)
        info(f"{what}: loaded {len(src_keys)} tensors of {Path(path).name} by name ({port.name}'s names translated)")
        return CheckpointMatch("renamed", str(path), len(src_keys), len(src_keys), convention=port.name)
    _check_alignment(src, dst, src_keys, dst_keys, path, what)
    n_by_name = sum(1 for k in src_keys if k in dst and src[k].shape == dst[k].shape)
    fits = _fitting(src, alternatives)
    match = CheckpointMatch("position", str(path), len(dst_keys), n_by_name, port.name if port else None, fits)
    if not allow_position:
        why = port.why_not(model) if port is not None and renamed is not None else None
        raise VisaeError(
            f"checkpoint {Path(path).name} does not fit {what} by name: {n_by_name} of {len(dst_keys)} tensors match by name, "
            f"the other {match.n_by_position} would be matched by position"
            + (f"; its names are {port.name}'s" + (f" ({why})" if why else "") if port is not None else "")
            + (f"; {fits} takes it by name" if fits else ""),
            (f"load it as {fits}:{path}, or " if fits else "") + ALLOW_HINT,
        )
    model.load_state_dict({kd: src[ks] for ks, kd in zip(src_keys, dst_keys)}, strict=False)
    return match


def _renamed(port: Port, src: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, str] | None:
    """``port``'s translation of every checkpoint key onto ``model``, when it covers every tensor with its shape."""
    keys = _params(src)
    names = port.rename(keys, model)
    dst = model.state_dict()
    if names is None or sorted(names.values()) != sorted(_params(dst)):
        return None
    return names if all(src[k].shape == dst[names[k]].shape for k in keys) else None


def fits_by_name(src: dict[str, torch.Tensor], model: torch.nn.Module) -> bool:
    """Whether ``model`` takes the checkpoint tensors ``src`` by key or by a known translation of their names."""
    dst = model.state_dict()
    if set(_params(src)) == set(_params(dst)):
        return all(src[k].shape == dst[k].shape for k in _params(dst))
    port = recognise(_params(src))
    return port is not None and _renamed(port, src, model) is not None and port.why_not(model) is None


def _fitting(src: dict[str, torch.Tensor], alternatives: Alternatives | None) -> str | None:
    """The first alternative architecture that takes ``src`` by name, or None."""
    for spec, candidate in alternatives() if alternatives is not None else ():
        if fits_by_name(src, candidate):
            return spec
    return None


def _params(sd: dict[str, torch.Tensor]) -> list[str]:
    """Keys that carry weights (BatchNorm's step counter is bookkeeping, not a weight)."""
    return [k for k in sd if not k.endswith("num_batches_tracked")]


def _first_new(src_keys: list[str], dst_keys: list[str]) -> str:
    known = set(dst_keys)
    return next((k for k in src_keys if k not in known), src_keys[0] if src_keys else "")


def _check_alignment(src: dict, dst: dict, src_keys: list[str], dst_keys: list[str], path: str | Path, what: str) -> None:
    """Refuse a checkpoint whose tensors cannot be matched by position either."""
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


def _check_shapes(src: dict, dst: dict, keys: list[str], path: str | Path, what: str) -> None:
    bad = [k for k in keys if src[k].shape != dst[k].shape]
    if bad:
        k = bad[0]
        raise VisaeError(
            f"checkpoint {path} does not fit {what}: '{k}' is {tuple(src[k].shape)}, the model wants {tuple(dst[k].shape)}",
            "check that the checkpoint was saved from this architecture (and number of classes)",
        )
