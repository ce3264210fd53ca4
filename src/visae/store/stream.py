"""Deterministic i.i.d.-like training batches from a store, with a background prefetch thread.

A store's token order follows its images, and a dataset's images are often sorted by class,
so a stream that shuffled only within neighbouring shards would feed the SAE a handful of
classes at a time. The stream of one epoch is therefore defined over small *blocks* drawn
from the whole store (``seed``, epoch ``e``):

1. every shard is cut into blocks of ``block_tokens`` consecutive tokens (about 256 KiB of
   data, never across a shard boundary); the blocks are put in a random order,
   ``default_rng([seed, e]).permutation(n_blocks)``;
2. consecutive blocks of that order are grouped into windows of at most ``buffer_tokens``
   tokens (about 256 MiB), so a window holds about a thousand blocks from all over the store;
3. each window is read into memory (one positioned read per block), the tokens a
   ``Selection`` leaves out (other token kinds, held-out images) are dropped, and the rest
   are emitted in a random order, ``default_rng([seed, e, w]).permutation(n_kept)``.

Every selected token appears exactly once per epoch; a batch mixes tokens from every block
of its window, i.e. from about a thousand random places of the store; memory holds one window
plus ``prefetch`` batches, whatever the store's size. The stream is a pure function of
``(seed, e)``, so resuming at ``start`` tokens skips whole windows without reading them and
continues the very same stream.

**Per-rank parts** (``part=(r, R)``, for data-parallel training): rank ``r`` of ``R`` takes the
blocks at positions ``i % R == r`` of the epoch's block order (the very same order, blocks
holding no selected token left out), so every block is read by exactly one rank. It groups
its blocks into windows of at most ``buffer_tokens // R`` tokens (all ranks together hold
about one window) and emits each window's selected tokens in the order
``default_rng([seed, e, w, r, R]).permutation(n_kept)``. The ranks agree on epoch boundaries
without talking: every rank can count every rank's selected tokens of epoch ``e`` from the
plan, and each epoch gives every rank the same number of full batches, as many as the
poorest rank fills; a richer rank's surplus (about a block per rank) is dropped for that epoch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from visae.errors import VisaeError
from visae.store.select import Selection

if TYPE_CHECKING:
    from visae.store.reader import Store

DEFAULT_BUFFER_BYTES = 256 << 20
"""Default shuffle window: about 256 MiB of stored activations."""
DEFAULT_BLOCK_BYTES = 256 << 10
"""Default block: about 256 KiB of stored activations (positioned reads of this size run near sequential speed)."""


def batches(
    store: "Store",
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    start: int = 0,
    epochs: int | None = 1,
    buffer_tokens: int | None = None,
    block_tokens: int | None = None,
    selection: Selection | None = None,
    prefetch: int = 2,
    pin_memory: bool = False,
    drop_last: bool = True,
    part: tuple[int, int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``(batch_size, D)`` tensors of ``dtype``; ``start`` tokens of the stream are skipped.

    ``epochs=None`` streams forever. With ``drop_last`` the tail of each epoch that does
    not fill a batch is dropped; batches never span two epochs. ``selection`` limits the
    stream to some token kinds and images; ``pin_memory`` pins batches for fast GPU copies.

    ``part=(r, R)`` streams rank ``r``'s part of ``R`` disjoint parts (see the module docstring):
    ``batch_size`` is then the rank's local batch and ``start`` counts the rank's own tokens
    (step x local batch). Every rank gets the same number of batches per epoch,
    ``floor(min over ranks of its selected tokens / batch_size)``; the surplus of the other
    ranks (about a block each) is dropped for that epoch. It needs ``drop_last``.
    """
    if batch_size < 1:
        raise VisaeError(f"batch size must be positive, got {batch_size}", "pass a positive --batch-size")
    if start < 0:
        raise VisaeError(f"start must be >= 0 tokens, got {start}", "pass start=0 or more")
    row_bytes = store.d * store.storage.itemsize
    if buffer_tokens is None:
        buffer_tokens = max(store.meta.shard_tokens, DEFAULT_BUFFER_BYTES // row_bytes)
    if block_tokens is None:
        block_tokens = max(64, DEFAULT_BLOCK_BYTES // row_bytes)
    if part is not None:
        r, R = part
        if not 0 <= r < R:
            raise VisaeError(f"part=(rank, ranks) needs 0 <= rank < ranks, got {part}", "pass torchrun's rank and world size")
        if not drop_last:
            raise VisaeError("per-rank parts (part=) need drop_last: every rank yields the same number of full batches",
                             "pass drop_last=True")  # fmt: skip
    plan = _Plan(store, selection or Selection(), shuffle, seed, max(1, buffer_tokens), max(1, block_tokens), part)
    plan.per_epoch(0, batch_size, drop_last)  # raises here, not in the prefetch thread, when no batch fits
    produce = plan.stream(batch_size, drop_last, start, epochs)
    convert = (_to_torch(store, b, dtype, pin_memory) for b in produce)
    return _prefetched(convert, prefetch) if prefetch > 0 else convert


def _to_torch(store: "Store", batch: np.ndarray, dtype: torch.dtype, pin: bool) -> torch.Tensor:
    t = store.storage.to_torch(batch, dtype)
    return t.pin_memory() if pin else t


class _Plan:
    """The blocks of a store, how many selected tokens each holds, and their order per epoch
    (of one rank's part with ``part=(r, R)``; the whole stream with None)."""

    def __init__(self, store: "Store", selection: Selection, shuffle: bool, seed: int, buffer_tokens: int, block_tokens: int,
                 part: tuple[int, int] | None = None):  # fmt: skip
        self.store, self.selection = store, selection
        self.shuffle, self.seed = shuffle, seed
        self.part = part
        self.rank, self.ranks = part or (0, 1)
        self.buffer_tokens = max(1, buffer_tokens // self.ranks)
        shard_B, lo_B, hi_B = [], [], []
        for k, n in enumerate(store.shard_sizes.tolist()):
            cuts = list(range(0, n, block_tokens)) + [n]
            shard_B += [k] * (len(cuts) - 1)
            lo_B += cuts[:-1]
            hi_B += cuts[1:]
        self.shard_B = np.asarray(shard_B, dtype=np.int64)
        self.lo_B = np.asarray(lo_B, dtype=np.int64)
        self.hi_B = np.asarray(hi_B, dtype=np.int64)
        start_B = store.shard_starts[self.shard_B] + self.lo_B
        self.kept_B = selection.count_blocks(store, start_B, start_B + (self.hi_B - self.lo_B), self.shard_B, self.lo_B)
        self.n_selected = int(self.kept_B.sum())

    def stream(self, batch_size: int, drop_last: bool, start: int, epochs: int | None) -> Iterator[np.ndarray]:
        epoch, skip = 0, start
        while epochs is None or epoch < epochs:
            per_epoch = self.per_epoch(epoch, batch_size, drop_last)
            if skip < per_epoch:
                yield from self.epoch(epoch, skip, batch_size, per_epoch, drop_last)
            epoch, skip = epoch + 1, max(0, skip - per_epoch)

    def per_epoch(self, epoch: int, batch_size: int, drop_last: bool) -> int:
        """Tokens this stream emits in ``epoch``: whole batches of the poorest rank's part (of all of it with no part)."""
        n, R = self.n_selected, self.ranks
        if self.part is None:
            per_epoch = (n // batch_size) * batch_size if drop_last else n
            if per_epoch == 0:
                raise VisaeError(f"the store holds {n} selected tokens, fewer than one batch of {batch_size}",
                                 "use a smaller batch size")  # fmt: skip
            return per_epoch
        kept = self.kept_B[self.order(epoch)]
        least = min(int(kept[r::R].sum()) for r in range(R))
        if least < batch_size:
            raise VisaeError(f"the store's {n} selected tokens make fewer than one batch of {batch_size} per rank over {R} ranks"
                             f" (a rank gets {least} in epoch {epoch})", "lower --batch-size or use fewer ranks")  # fmt: skip
        return (least // batch_size) * batch_size

    def order(self, epoch: int) -> np.ndarray:
        """Block numbers of the whole stream in ``epoch``'s order, blocks holding no selected token left out."""
        n_blocks = len(self.shard_B)
        order = np.random.default_rng([self.seed, epoch]).permutation(n_blocks) if self.shuffle else np.arange(n_blocks)
        return order[self.kept_B[order] > 0]

    def windows(self, epoch: int) -> list[np.ndarray]:
        """Groups of block numbers of this stream (this rank's blocks with a part), in stream order."""
        order = self.order(epoch)[self.rank :: self.ranks]
        sizes = (self.hi_B - self.lo_B)[order]
        groups: list[np.ndarray] = []
        a, size = 0, 0
        for i, n in enumerate(sizes.tolist()):
            if i > a and size + n > self.buffer_tokens:
                groups.append(order[a:i])
                a, size = i, 0
            size += n
        if a < len(order):
            groups.append(order[a:])
        return groups

    def epoch(self, epoch: int, skip: int, batch_size: int, per_epoch: int, drop_last: bool) -> Iterator[np.ndarray]:
        """Batches of one epoch, ``skip`` selected tokens in."""
        remaining = per_epoch - skip
        parts: list[np.ndarray] = []
        have = 0
        windows = self.windows(epoch)
        raw = [int((self.hi_B[g] - self.lo_B[g]).sum()) for g in windows]
        buf_TD: np.ndarray | None = None  # the in-memory shuffle buffer, reused window after window
        for w, group in enumerate(windows):
            size = int(self.kept_B[group].sum())
            if skip >= size:
                skip -= size
                continue
            if buf_TD is None:
                buf_TD = np.empty((max(raw), self.store.d), self.store.storage.numpy)
            data_TD, rows_T = self._load(group, buf_TD)
            key = [self.seed, epoch, w] + ([self.rank, self.ranks] if self.part else [])
            perm = np.random.default_rng(key).permutation(size) if self.shuffle else np.arange(size)
            take_T = rows_T[perm] if rows_T is not None else perm
            pos, skip = skip, 0
            while pos < size and remaining > 0:
                need = min(batch_size - have, size - pos, remaining)
                sel = take_T[pos : pos + need]
                contiguous = not self.shuffle and rows_T is None
                parts.append(data_TD[sel[0] : sel[0] + need] if contiguous else data_TD[sel])
                have, pos, remaining = have + need, pos + need, remaining - need
                if have == batch_size or (remaining == 0 and not drop_last):
                    yield np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])
                    parts, have = [], 0
            if remaining == 0:
                return

    def _load(self, group: np.ndarray, buf_TD: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Read the window's blocks into ``buf_TD``; returns the data and the kept rows (None: all)."""
        a = 0
        masks: list[np.ndarray] = []
        for b in group.tolist():
            k, lo, hi = int(self.shard_B[b]), int(self.lo_B[b]), int(self.hi_B[b])
            self.store.read_rows_into(k, lo, buf_TD[a : a + hi - lo])
            if not self.selection.everything:
                g0 = int(self.store.shard_starts[k]) + lo
                masks.append(self.selection.mask(self.store, g0, g0 + hi - lo, k, lo))
            a += hi - lo
        rows = np.flatnonzero(np.concatenate(masks)) if masks else None
        return buf_TD[:a], rows


_END = object()


def _prefetched(items: Iterator[torch.Tensor], depth: int) -> Iterator[torch.Tensor]:
    """Run ``items`` in a background thread, ``depth`` results ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(obj: object) -> bool:
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, re-raised there
            put(e)

    thread = threading.Thread(target=work, name="visae-store-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
