"""Forward hooks: list a model's hookable modules, infer their token layouts, capture outputs.

A module is *hookable* when it runs exactly once per forward and its output (or the first
element of a tuple / model-output it returns) is a tensor whose first axis is the batch and
whose remaining axes read as a pooled vector ``(D)``, a token sequence ``(N, D)`` or a
feature map ``(C, H, W)`` / ``(H, W, C)``.

Feature maps are told apart by their square grid (inputs are square): ``(C, H, H)`` is
channels-first, ``(H, H, C)`` channels-last (ConvNeXt's inner linear layers, timm's patch
embeddings); when all three sizes are equal the map is read channels-first.

``capture`` registers hooks only on the requested modules and raises a private exception
from the hook of the last one to fire, so the rest of the forward never runs.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError


@dataclass
class Traced:
    """What one dummy forward saw of a module."""

    shape: tuple[int, ...] = ()
    """Output shape without the batch axis (of the first call)."""
    calls: int = 0
    """How many times the module ran in the forward."""
    batch_first: bool = True
    """Whether the output's first axis was the batch."""
    layout: TokenLayout | None = None
    """Token layout inferred from the shape; None when the output is not a tensor we can read."""

    @property
    def hookable(self) -> bool:
        return self.calls == 1 and self.batch_first and self.layout is not None

    def why_not(self) -> str:
        if self.calls == 0:
            return "it does not run in the forward"
        if self.calls > 1:
            return f"it runs {self.calls} times per forward (a shared module), so its output is ambiguous"
        if not self.batch_first:
            return "its output does not have the batch on the first axis"
        return "its output is not a tensor of shape (B, D), (B, N, D) or (B, C, H, W)"


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module produced: itself, or the first element of a tuple / ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):  # transformers ModelOutput is an ordered dict of its non-None fields
        output = list(output.values())
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def trace(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], Any],
    dummy_BCHW: torch.Tensor,
    *,
    prefix: tuple[int, int] | None,
    patch_grid: tuple[int, int] | None,
) -> dict[str, Traced]:
    """Run one forward with a hook on every module; return what each produced, in call order.

    ``prefix`` is the model's declared (CLS, register) token counts (None: infer from shapes);
    ``patch_grid`` the patch grid of its ViT sequences at this input size (None: infer).
    """
    seen: dict[str, Traced] = {}
    batch = dummy_BCHW.shape[0]

    def hook(name: str) -> Callable[..., None]:
        def record(module: torch.nn.Module, args: Any, output: Any) -> None:
            t = seen.setdefault(name, Traced())
            t.calls += 1
            out = first_tensor(output)
            if t.calls == 1 and out is not None and out.dim() >= 2:
                t.shape = tuple(out.shape[1:])
                t.batch_first = out.shape[0] == batch
                t.layout = infer_layout(t.shape, prefix=prefix, patch_grid=patch_grid)

        return record

    modules = [(name, m) for name, m in model.named_modules() if name]
    handles = [m.register_forward_hook(hook(name)) for name, m in modules]
    try:
        forward(dummy_BCHW)
    finally:
        for h in handles:
            h.remove()
    for name, _ in modules:  # modules that never ran are known, so errors can say why
        seen.setdefault(name, Traced())
    return seen


def infer_layout(
    shape: tuple[int, ...], *, prefix: tuple[int, int] | None, patch_grid: tuple[int, int] | None
) -> TokenLayout | None:
    """The token layout of an output of ``shape`` (without batch), or None if it has none."""
    if len(shape) == 1:
        return TokenLayout("pooled", shape[0], None)
    if len(shape) == 2:
        return _sequence_layout(shape[0], shape[1], prefix, patch_grid)
    if len(shape) == 3:
        a, b, c = shape
        # A square input gives a square map: (C, H, H) is channels-first, (H, H, C) channels-last.
        if a == b and b != c:
            return TokenLayout("spatial", c, (a, b), channels_last=True)
        return TokenLayout("spatial", a, (b, c))
    return None


def _sequence_layout(
    n: int, dim: int, prefix: tuple[int, int] | None, patch_grid: tuple[int, int] | None
) -> TokenLayout:
    """(N, D): CLS + registers + patches when the counts add up, patches only, or an unknown sequence."""
    n_patches = None if patch_grid is None else patch_grid[0] * patch_grid[1]
    if prefix is not None:
        n_cls, n_reg = prefix
        for c, r in ((n_cls, n_reg), (0, 0)):  # after the prefix tokens are added, or before
            grid = patch_grid if n_patches == n - c - r else _square_grid(n - c - r, patch_grid)
            if grid is not None:
                return TokenLayout("sequence", dim, grid, n_cls=c, n_registers=r)
    elif n_patches is not None and 0 <= n - n_patches <= 8:  # undeclared prefix: count it
        return TokenLayout("sequence", dim, patch_grid, n_cls=n - n_patches)
    return TokenLayout("sequence", dim, None)


def _square_grid(n: int, patch_grid: tuple[int, int] | None) -> tuple[int, int] | None:
    """A square grid of n cells, only when the model did not say what its grid is."""
    if patch_grid is not None or n <= 0:
        return None
    s = math.isqrt(n)
    return (s, s) if s * s == n else None


class _StopForward(Exception):
    """Raised from the hook of the last requested module to skip the rest of the forward."""


def capture(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], Any],
    pixels_BCHW: torch.Tensor,
    names: list[str],
) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for one batch; stops the forward once all have fired."""
    wanted = set(names)
    got: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable[..., None]:
        def record(module: torch.nn.Module, args: Any, output: Any) -> None:
            out = first_tensor(output)
            if out is None:
                raise VisaeError(f"layer '{name}' produced no tensor on this input", "pick another layer")
            # clone: a later in-place op (ReLU(inplace=True)) must not change what we captured
            got[name] = out.detach().clone()
            if wanted <= got.keys():
                raise _StopForward

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in wanted]
    try:
        forward(pixels_BCHW)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = wanted - got.keys()
    if missing:
        raise VisaeError(f"layer(s) {', '.join(sorted(missing))} did not run on this input", "pick other layers")
    return {name: got[name] for name in names}


def suggest(name: str, names: list[str]) -> str:
    """A ``did you mean 'x'?`` fragment for a mistyped layer name, or ''."""
    suffix = sorted((n for n in names if n.endswith("." + name)), key=len)[:3]
    if suffix:
        return _did_you_mean(suffix)
    # compare with the same number of trailing components: 'stage.3' ~ 'stages.3' of 'encoder.stages.3'
    k = name.count(".") + 1
    tails: dict[str, str] = {}
    for n in names:
        tails.setdefault(".".join(n.split(".")[-k:]), n)
    close = difflib.get_close_matches(name, list(tails), n=3, cutoff=0.6)
    if close:
        return _did_you_mean([tails[c] for c in close])
    return _did_you_mean(difflib.get_close_matches(name, names, n=3, cutoff=0.5))


def _did_you_mean(choices: list[str]) -> str:
    return "did you mean " + " or ".join(f"'{c}'" for c in choices) + "?" if choices else ""
