"""A store seen through a ``Selection``: the token source the trainer reads.

``StoreView(store, selection)`` has the reading methods of a store (``len``, ``d``,
``mean_D``, ``scale``, shuffled ``batches``) restricted to the selected tokens, plus
``sample`` (random tokens for initialisation) and ``chunks`` (the selected tokens in store
order, for evaluation). Its normalisation statistics are those of the selected token kinds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError
from visae.progress import info
from visae.store.reader import Store, stats_file
from visae.store.select import Selection
from visae.store.stats import RunningStats


class StoreView:
    """The selected tokens of ``store``."""

    def __init__(self, store: Store, selection: Selection | None = None):
        self.store = store
        self.selection = selection or Selection()
        self.meta = store.meta
        self.path = store.path

    @property
    def d(self) -> int:
        return self.store.d

    @cached_property
    def _n(self) -> int:
        from visae.store.stream import _Plan

        return _Plan(self.store, self.selection, False, 0, 1, max(1, self.store.meta.shard_tokens)).n_selected

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"StoreView({str(self.store.path)!r}: {len(self)} tokens, {self.selection.describe(self.store)})"

    # ------------------------------------------------------------ statistics

    @cached_property
    def _stats(self) -> RunningStats:
        """Statistics of the selected kinds over the whole store (held-out images included, as for the store's own)."""
        kinds = self.selection.kinds
        if kinds is None:
            return self.store._stats
        meta = self.store.meta
        if meta.stats.file and meta.stats.by_kind:
            by_kind = RunningStats.load_by_kind(stats_file(self.store.path, meta))
            if kinds <= set(by_kind):
                total = RunningStats(self.d)
                for c in sorted(kinds):
                    total = total.merged(by_kind[c])
                return total
        info(f"{self.store.path}: computing statistics of the selected token kinds (one pass; stores written by this "
             f"visae keep them)")  # fmt: skip
        st = RunningStats(self.d)
        for x_TD in StoreView(self.store, Selection(kinds)).chunks():
            st.update(x_TD)
        return st

    @property
    def mean_D(self) -> torch.Tensor:
        return torch.from_numpy(self._stats.mean_D.astype(np.float32))

    @property
    def scale(self) -> float:
        msq = self._stats.mean_sq_norm
        return math.sqrt(self.d / msq) if msq > 0 else 1.0

    # ------------------------------------------------------------ reading

    def batches(self, batch_size: int, **kw: Any) -> Iterator[torch.Tensor]:
        """Shuffled training batches of the selected tokens (``visae.store.stream.batches``; ``part=(r, R)``: rank r's part)."""
        from visae.store.stream import batches

        return batches(self.store, batch_size, selection=self.selection, **kw)

    def chunks(self, chunk_tokens: int = 65_536, dtype: torch.dtype = torch.float32,
               max_tokens: int | None = None) -> Iterator[torch.Tensor]:  # fmt: skip
        """The selected tokens in store order, ``chunk_tokens`` rows at a time (at most ``max_tokens``)."""
        left = len(self) if max_tokens is None else min(max_tokens, len(self))
        for a, b in self._spans(chunk_tokens):
            if left <= 0:
                return
            data_TD = self.store.read_range(a, b)
            if self.selection.kinds is not None:
                kind_T = self.store.index_range(a, b)["kind"]
                data_TD = data_TD[np.isin(kind_T, list(self.selection.kinds))]
            data_TD = data_TD[:left]
            left -= len(data_TD)
            if len(data_TD):
                yield self.store.storage.to_torch(data_TD, dtype)

    def _spans(self, chunk_tokens: int) -> Iterator[tuple[int, int]]:
        """Store token ranges holding the selected images, merged and cut to ``chunk_tokens``."""
        sel, n = self.selection, len(self.store)
        if sel.keep_images:
            start_E, end_E = sel.image_spans(self.store)
        else:
            # every image but the excluded ones: the gaps between their spans
            s_E, e_E = sel.image_spans(self.store) if len(sel.images) else (np.zeros(0, np.int64), np.zeros(0, np.int64))
            start_E, end_E = np.r_[0, e_E], np.r_[s_E, n]
        a = b = None
        for s, e in zip(start_E.tolist(), end_E.tolist()):
            if e <= s:
                continue
            if b is not None and s == b and e - a <= chunk_tokens:
                b = e
                continue
            if a is not None:
                yield from _cut(a, b, chunk_tokens)
            a, b = s, e
        if a is not None:
            yield from _cut(a, b, chunk_tokens)

    def sample(self, n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Up to ``n`` selected tokens drawn without replacement (seeded)."""
        rng = np.random.default_rng(seed)
        N = len(self.store)
        want = min(n, len(self))
        if want == 0:
            raise VisaeError(f"{self!r} selects no tokens", "choose other --tokens or a smaller holdout")
        pos = np.sort(rng.choice(N, size=min(N, 2 * want + 1024), replace=False))
        keep = self._selected(pos)
        if keep.sum() < want:  # a sparse selection: take them all, in order
            pos = np.arange(N)
            keep = self._selected(pos)
        pos = pos[keep]
        pos = np.sort(rng.choice(pos, size=want, replace=False))
        return self.store.get(pos, dtype)

    def _selected(self, pos: np.ndarray) -> np.ndarray:
        sel = self.selection
        keep = sel.in_images(self.store, pos)
        if sel.kinds is not None:
            shard = np.searchsorted(self.store.shard_starts, pos, side="right") - 1
            kind = np.empty(len(pos), dtype=np.uint8)
            for k in np.unique(shard).tolist():
                at = shard == k
                kind[at] = self.store.index_rows(k, 0, int(self.store.shard_sizes[k]))["kind"][pos[at] - self.store.shard_starts[k]]
            keep &= np.isin(kind, list(sel.kinds))
        return keep


def _cut(a: int, b: int, n: int) -> Iterator[tuple[int, int]]:
    for s in range(a, b, n):
        yield s, min(s + n, b)
