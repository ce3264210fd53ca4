"""Which tokens of a store a stage reads: token kinds, and images kept or left out.

A ``Selection`` is data (kinds, a sorted list of image-table rows, keep or leave out), so the
trainer's stream, its held-out evaluation and the analysis read the very same tokens from
it. ``holdout_images`` picks the images kept out of training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from visae.errors import VisaeError
from visae.store.format import KIND_CODES, TOKEN_KINDS, kinds_held

if TYPE_CHECKING:
    from visae.store.reader import Store


@dataclass(frozen=True)
class Selection:
    """Tokens of the kinds ``kinds`` (None: every kind) of the images ``images`` (rows of the store's
    image table, sorted) when ``keep_images``, or of every image but those when not."""

    kinds: frozenset[int] | None = None
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    keep_images: bool = False

    @property
    def everything(self) -> bool:
        return self.kinds is None and not self.keep_images and len(self.images) == 0

    def only(self, images: np.ndarray) -> "Selection":
        """The same kinds, of ``images`` only."""
        return Selection(self.kinds, np.sort(np.asarray(images, dtype=np.int64)), keep_images=True)

    def without(self, images: np.ndarray) -> "Selection":
        """The same kinds, of every image but ``images``."""
        return Selection(self.kinds, np.sort(np.asarray(images, dtype=np.int64)), keep_images=False)

    # ------------------------------------------------------------ token masks

    def image_spans(self, store: "Store") -> tuple[np.ndarray, np.ndarray]:
        """Token spans [start, end) of the listed images, sorted."""
        table = store.images
        start_E = table["token_start"][self.images]
        return start_E, start_E + table["n_tokens"][self.images]

    def in_images(self, store: "Store", pos_T: np.ndarray) -> np.ndarray:
        if not len(self.images):
            return np.full(len(pos_T), not self.keep_images)
        start_E, end_E = self.image_spans(store)
        i_T = np.searchsorted(start_E, pos_T, side="right") - 1
        inside = (i_T >= 0) & (pos_T < end_E[np.maximum(i_T, 0)])
        return inside if self.keep_images else ~inside

    def mask(self, store: "Store", g0: int, g1: int, shard: int, lo: int) -> np.ndarray:
        """Boolean mask of the selected tokens among store tokens ``g0:g1`` (rows ``lo:`` of ``shard``)."""
        keep_T = self.in_images(store, np.arange(g0, g1)) if (self.keep_images or len(self.images)) else np.ones(g1 - g0, bool)
        if self.kinds is not None:
            kind_T = np.asarray(store.index_rows(shard, lo, lo + g1 - g0)["kind"])
            keep_T &= np.isin(kind_T, list(self.kinds))
        return keep_T

    def count_blocks(self, store: "Store", g0_B: np.ndarray, g1_B: np.ndarray, shard_B: np.ndarray, lo_B: np.ndarray) -> np.ndarray:
        """Selected tokens in each block ``g0_B[i]:g1_B[i]``."""
        if self.kinds is not None:
            return np.array([int(self.mask(store, int(a), int(b), int(k), int(lo)).sum())
                             for a, b, k, lo in zip(g0_B, g1_B, shard_B, lo_B)], dtype=np.int64)  # fmt: skip
        n_B = g1_B - g0_B
        if not self.keep_images and not len(self.images):
            return n_B
        start_E, end_E = self.image_spans(store)
        inside_B = _covered(start_E, end_E, g1_B) - _covered(start_E, end_E, g0_B)
        return inside_B if self.keep_images else n_B - inside_B

    def describe(self, store: "Store") -> str:
        kinds = "all kinds" if self.kinds is None else "+".join(sorted({TOKEN_KINDS[c] for c in self.kinds}))
        if not self.keep_images and not len(self.images):
            return kinds
        return f"{kinds}, {'only' if self.keep_images else 'all but'} {len(self.images)} images"


def _covered(start_E: np.ndarray, end_E: np.ndarray, pos_B: np.ndarray) -> np.ndarray:
    """How many positions below each ``pos`` lie inside the disjoint sorted spans."""
    cum_E = np.r_[0, np.cumsum(end_E - start_E)]
    i_B = np.searchsorted(start_E, pos_B, side="right") - 1
    j_B = np.maximum(i_B, 0)
    part_B = np.clip(pos_B - start_E[j_B], 0, (end_E - start_E)[j_B]) if len(start_E) else np.zeros_like(pos_B)
    return np.where(i_B >= 0, cum_E[j_B] + part_B, 0)


def token_kinds(store: "Store", tokens: str | None) -> frozenset[int] | None:
    """Kind codes for ``--tokens`` against what the store holds (None: every kind it holds).

    Default: the store's own selection, except that a store of several kinds trains on its
    patch tokens (CLS and register tokens are a different distribution).
    """
    held = kinds_held(store.meta)
    if tokens is None:
        tokens = "patch" if len(held) > 1 and held & KIND_CODES["patch"] else None
        if tokens is None:
            return None
    if tokens not in KIND_CODES:
        raise VisaeError(f"unknown token kind '{tokens}'", "use patch, cls, registers or all")
    want = KIND_CODES[tokens] & held
    if not want:
        names = ", ".join(sorted({TOKEN_KINDS[c] for c in held})) or "none"
        raise VisaeError(f"--tokens {tokens}: the store {store.path} holds no such tokens (it holds: {names})",
                         "pick one it holds, or extract again with --tokens all")  # fmt: skip
    return None if want == held else frozenset(want)


def holdout_images(store: "Store", share: float, max_tokens: int, seed: int) -> np.ndarray:
    """Rows of the image table kept out of training: a seeded random ``share`` of the images,
    capped at about ``max_tokens`` tokens, at least one image, never all of them."""
    n_tokens_I = store.images["n_tokens"]
    n = len(n_tokens_I)
    if share <= 0 or n < 2:
        return np.zeros(0, dtype=np.int64)
    order_I = np.random.default_rng([seed, 0x401D]).permutation(n)
    cum_I = np.cumsum(n_tokens_I[order_I])
    by_share = int(np.ceil(share * n))
    by_tokens = int(np.searchsorted(cum_I, max_tokens, side="left")) + 1
    m = int(np.clip(min(by_share, by_tokens), 1, n - 1))
    return np.sort(order_I[:m])
