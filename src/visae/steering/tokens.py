"""A layer output as ``(B, N, D)`` tokens and back, and which of its N tokens an edit selects.

Maps ``(B, C, H, W)`` / ``(B, H, W, C)`` become their H*W cells in row-major order, pooled
``(B, D)`` one token, ViT sequences stay as they are: ``n_cls`` CLS, ``n_registers`` registers,
then the patches (``visae.backbones.tokens.TokenLayout``).
"""

from __future__ import annotations

import torch

from visae.backbones.tokens import TokenLayout
from visae.errors import VisaeError
from visae.steering.edit import LatentOp


def to_seq(out: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """``x_BND`` in float32 from a layer output laid out as ``layout``."""
    b = out.shape[0]
    if layout.kind == "spatial":
        fmap_BHWC = out if layout.channels_last else out.permute(0, 2, 3, 1)
        return fmap_BHWC.reshape(b, -1, layout.dim).float()
    if layout.kind == "pooled":
        return out.reshape(b, 1, layout.dim).float()
    return out.float()


def from_seq(x_BND: torch.Tensor, like: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """``x_BND`` back in the shape, memory order and dtype of the layer output ``like``."""
    x_BND = x_BND.to(like.dtype)
    if layout.kind == "spatial":
        h, w = layout.grid  # type: ignore[misc]
        fmap_BHWC = x_BND.reshape(like.shape[0], h, w, layout.dim)
        return fmap_BHWC if layout.channels_last else fmap_BHWC.permute(0, 3, 1, 2)
    return x_BND.reshape(like.shape)


def patch_N(layout: TokenLayout, n: int) -> torch.Tensor:
    """(N,) bool: the patch tokens (every token of maps, pooled layers and grid-less sequences)."""
    keep_N = torch.ones(n, dtype=torch.bool)
    keep_N[: layout.n_prefix] = False
    return keep_N


def selected_N(op: LatentOp, layout: TokenLayout, n: int) -> torch.Tensor:
    """(N,) bool: the tokens of one image that ``op.where`` names (before the 'active' test)."""
    if op.where in ("all", "active"):
        return patch_N(layout, n)
    keep_N = torch.zeros(n, dtype=torch.bool)
    if op.where == "cls":
        if layout.n_cls == 0:
            raise VisaeError("where='cls' but this layer has no CLS token", "use where='all' (or pick a ViT layer with CLS)")
        keep_N[: layout.n_cls] = True
        return keep_N
    if layout.grid is None:
        raise VisaeError(f"where='{op.where}' needs a grid but this layer has none ({layout.kind})", "use where='all' or 'active'")
    h, w = layout.grid
    if op.where == "cells":
        for y, x in op.cells or []:
            if not (0 <= y < h and 0 <= x < w):
                raise VisaeError(f"cell ({y}, {x}) is outside the layer's {h}x{w} grid", f"use cells with 0 <= y < {h}, 0 <= x < {w}")
            keep_N[layout.n_prefix + y * w + x] = True
        return keep_N
    mask_HW = torch.tensor(op.mask, dtype=torch.bool) if op.mask else torch.zeros(0, dtype=torch.bool)
    if tuple(mask_HW.shape) != (h, w):
        raise VisaeError(f"the mask has shape {tuple(mask_HW.shape)} but the layer's grid is {h}x{w}", f"pass an {h}x{w} boolean mask")
    keep_N[layout.n_prefix :] = mask_HW.reshape(-1)
    return keep_N
