"""Token layouts: what a layer's output looks like, and how it becomes a list of tokens.

A captured layer output is one of three things:

- ``spatial``: a CNN feature map ``(B, C, H, W)`` (or channels-last ``(B, H, W, C)``, as
  ConvNeXt's inner linear layers produce); every grid cell is a token with its ``(y, x)``.
- ``sequence``: a ViT token sequence ``(B, N, D)`` = ``n_cls`` CLS tokens, then
  ``n_registers`` register tokens, then the ``H * W`` patch tokens in row-major order.
- ``pooled``: one vector per image ``(B, D)``.

``to_tokens`` flattens any of them into ``tokens_TD`` (image-major: all tokens of image 0,
then image 1, ...) plus a ``TokenIndex`` that says, for every row, which image it came from,
what kind of token it is and where it sits on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from visae.errors import VisaeError

LayoutKind = Literal["spatial", "sequence", "pooled"]
Select = Literal["patch", "cls", "registers", "all"]

PATCH, CLS, REGISTER, POOLED = 0, 1, 2, 3
TOKEN_KINDS = {"patch": PATCH, "cls": CLS, "register": REGISTER, "pooled": POOLED}
"""Token kind name -> the code stored in ``TokenIndex.kind``."""


@dataclass(frozen=True)
class TokenLayout:
    """How to read one layer's output as tokens (stored with every activation store)."""

    kind: LayoutKind
    dim: int
    """D: the size of one token (C for CNN maps)."""
    grid: tuple[int, int] | None
    """(H, W) of the map or of the patch grid; None for pooled vectors and unknown sequences."""
    n_cls: int = 0
    """CLS tokens at the start of the sequence."""
    n_registers: int = 0
    """Register tokens right after the CLS tokens (DINOv2 with registers)."""
    channels_last: bool = False
    """For spatial maps: the output is (B, H, W, C) rather than (B, C, H, W)."""

    def __post_init__(self) -> None:
        if self.kind not in ("spatial", "sequence", "pooled"):
            raise ValueError(f"unknown layout kind {self.kind!r}")
        if self.kind == "spatial" and self.grid is None:
            raise ValueError("a spatial layout needs a grid")
        if self.kind != "sequence" and (self.n_cls or self.n_registers):
            raise ValueError("only sequences have CLS or register tokens")
        if self.kind != "spatial" and self.channels_last:
            raise ValueError("only spatial maps can be channels-last")

    @property
    def n_prefix(self) -> int:
        """Tokens before the patches: CLS + registers."""
        return self.n_cls + self.n_registers

    def shape(self) -> tuple[int | None, ...]:
        """The expected output shape without the batch axis (None: any length)."""
        if self.kind == "pooled":
            return (self.dim,)
        if self.kind == "spatial":
            h, w = self.grid  # type: ignore[misc]
            return (h, w, self.dim) if self.channels_last else (self.dim, h, w)
        if self.grid is None:
            return (None, self.dim)
        return (self.n_prefix + self.grid[0] * self.grid[1], self.dim)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dim": self.dim,
            "grid": list(self.grid) if self.grid else None,
            "n_cls": self.n_cls,
            "n_registers": self.n_registers,
            "channels_last": self.channels_last,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TokenLayout":
        grid = d.get("grid")
        return cls(
            kind=d["kind"],
            dim=int(d["dim"]),
            grid=(int(grid[0]), int(grid[1])) if grid else None,
            n_cls=int(d.get("n_cls", 0)),
            n_registers=int(d.get("n_registers", 0)),
            channels_last=bool(d.get("channels_last", False)),
        )


@dataclass(frozen=True)
class TokenIndex:
    """Per-token metadata, one entry per row of ``tokens_TD``."""

    image: np.ndarray
    """(T,) int32: index of the token's image within the batch."""
    kind: np.ndarray
    """(T,) int8: 0 patch, 1 cls, 2 register, 3 pooled (``TOKEN_KINDS``)."""
    y: np.ndarray
    """(T,) int32: grid row, -1 for tokens that are not on the grid."""
    x: np.ndarray
    """(T,) int32: grid column, -1 for tokens that are not on the grid."""

    def __len__(self) -> int:
        return len(self.image)


def tokens_per_image(layout: TokenLayout, select: Select = "patch", n_seq: int | None = None) -> int:
    """How many tokens ``to_tokens`` yields per image for ``select``.

    A sequence without a grid has no fixed length in its layout: pass its length ``n_seq``.
    """
    return len(_per_image_index(layout, select, n_seq)[0])


def to_tokens(out: torch.Tensor, layout: TokenLayout, select: Select = "patch") -> tuple[torch.Tensor, TokenIndex]:
    """Flatten a layer output into ``(tokens_TD, index)``, image-major.

    ``select`` picks token kinds: ``patch`` (grid cells of a map, patch tokens of a
    sequence, the vector of a pooled layer), ``cls``, ``registers`` or ``all``.
    """
    _check_shape(out, layout)
    b = out.shape[0]
    if layout.kind == "spatial":
        fmap_BHWC = out if layout.channels_last else out.permute(0, 2, 3, 1)
        seq_BND = fmap_BHWC.reshape(b, -1, layout.dim)
    elif layout.kind == "pooled":
        seq_BND = out.reshape(b, 1, layout.dim)
    else:
        seq_BND = out
    pos_N, kind_N, y_N, x_N = _per_image_index(layout, select, seq_BND.shape[1])
    if len(pos_N) < seq_BND.shape[1]:
        seq_BND = seq_BND[:, torch.as_tensor(pos_N, dtype=torch.long, device=out.device)]
    tokens_TD = seq_BND.reshape(-1, layout.dim)
    n = len(pos_N)
    index = TokenIndex(
        image=np.repeat(np.arange(b, dtype=np.int32), n),
        kind=np.tile(kind_N, b),
        y=np.tile(y_N, b),
        x=np.tile(x_N, b),
    )
    return tokens_TD, index


def _per_image_index(layout: TokenLayout, select: Select, n_seq: int | None = None) -> tuple[np.ndarray, ...]:
    """(position in the flattened per-image sequence, kind, y, x) of the selected tokens."""
    if select not in ("patch", "cls", "registers", "all"):
        raise VisaeError(f"unknown token selection '{select}'", "choose patch, cls, registers or all")
    if layout.kind == "pooled":
        _refuse_prefix(layout, select, "a pooled layer has one vector per image")
        return _index_arrays(np.zeros(1, np.int64), np.full(1, POOLED, np.int8), None)
    if layout.kind == "spatial":
        _refuse_prefix(layout, select, "a CNN feature map has only grid cells")
        h, w = layout.grid  # type: ignore[misc]
        return _index_arrays(np.arange(h * w), np.full(h * w, PATCH, np.int8), layout.grid)
    if layout.grid is None:  # a sequence whose tokens are not patches of the image (e.g. a pooling head's queries)
        _refuse_prefix(layout, select, "this sequence has no identified CLS or register tokens")
        if n_seq is None:
            raise ValueError("a sequence layout without a grid has no fixed length: pass n_seq")
        return _index_arrays(np.arange(n_seq), np.full(n_seq, PATCH, np.int8), None)
    n_patches = layout.grid[0] * layout.grid[1]
    kind_N = np.array([CLS] * layout.n_cls + [REGISTER] * layout.n_registers, dtype=np.int8)
    kind_N = np.concatenate([kind_N, np.full(n_patches, PATCH, np.int8)])
    keep = {"patch": [PATCH], "cls": [CLS], "registers": [REGISTER], "all": [PATCH, CLS, REGISTER]}[select]
    pos_N = np.flatnonzero(np.isin(kind_N, keep))
    if len(pos_N) == 0:
        what = {"cls": "CLS token", "registers": "register tokens"}[select]
        raise VisaeError(f"this layer's sequence has no {what}", "use --tokens patch (or all)")
    y_N = np.full(len(kind_N), -1, np.int32)
    x_N = np.full(len(kind_N), -1, np.int32)
    gy, gx = np.divmod(np.arange(n_patches), layout.grid[1])
    y_N[layout.n_prefix :], x_N[layout.n_prefix :] = gy, gx
    return pos_N, kind_N[pos_N], y_N[pos_N], x_N[pos_N]


def _index_arrays(pos_N: np.ndarray, kind_N: np.ndarray, grid: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    if grid is None:
        y_N = x_N = np.full(len(pos_N), -1, np.int32)
    else:
        y_N, x_N = (a.astype(np.int32) for a in np.divmod(pos_N, grid[1]))
    return pos_N, kind_N, y_N, x_N


def _refuse_prefix(layout: TokenLayout, select: Select, why: str) -> None:
    if select in ("cls", "registers"):
        raise VisaeError(f"cannot select {select} tokens: {why}", "use --tokens patch (or all)")


def _check_shape(out: torch.Tensor, layout: TokenLayout) -> None:
    want = layout.shape()
    got = tuple(out.shape[1:])
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        raise ValueError(f"output of shape {tuple(out.shape)} does not match layout {layout} (expected (B, *{want}))")
