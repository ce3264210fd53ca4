"""Deterministic shuffled training batches from a store, with a background prefetch thread.

The stream of one epoch is defined as follows (``seed``, epoch ``e``):

1. shards are put in a random order, ``default_rng([seed, e]).permutation(n_shards)``;
2. consecutive shards of that order are grouped into windows of about ``buffer_tokens``
   tokens (at least one shard each);
3. each window is read into memory (sequential reads) and its tokens are emitted in a
   random order, ``default_rng([seed, e, w]).permutation(window_tokens)``.

Every token appears exactly once per epoch; memory holds one window plus ``prefetch``
batches, whatever the store's size. Because the stream is a pure function of
``(seed, e)``, resuming at ``start`` tokens skips whole windows without reading them and
continues the very same stream.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from visae.errors import VisaeError

if TYPE_CHECKING:
    from visae.store.reader import Store

DEFAULT_BUFFER_BYTES = 256 << 20
"""Default shuffle window: about 256 MiB of stored activations."""


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
    prefetch: int = 2,
    drop_last: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield ``(batch_size, D)`` tensors of ``dtype``; ``start`` tokens of the stream are skipped.

    ``epochs=None`` streams forever. With ``drop_last`` the tail of each epoch that does
    not fill a batch is dropped; batches never span two epochs.
    """
    n = len(store)
    if batch_size < 1:
        raise VisaeError(f"batch size must be positive, got {batch_size}")
    if start < 0:
        raise VisaeError(f"start must be >= 0 tokens, got {start}")
    per_epoch = (n // batch_size) * batch_size if drop_last else n
    if per_epoch == 0:
        raise VisaeError(f"the store holds {n} tokens, fewer than one batch of {batch_size}", "use a smaller batch size")
    if buffer_tokens is None:
        buffer_tokens = max(store.meta.shard_tokens, DEFAULT_BUFFER_BYTES // (store.d * store.storage.itemsize))
    plan = _Plan(store, batch_size, shuffle, seed, max(1, buffer_tokens), per_epoch, drop_last)
    produce = plan.stream(start, epochs)
    convert = (store.storage.to_torch(b, dtype) for b in produce)
    return _prefetched(convert, prefetch) if prefetch > 0 else convert


class _Plan:
    def __init__(self, store: "Store", batch_size: int, shuffle: bool, seed: int, buffer_tokens: int, per_epoch: int, drop_last: bool):
        self.store = store
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_tokens = buffer_tokens
        self.per_epoch = per_epoch
        self.drop_last = drop_last

    def stream(self, start: int, epochs: int | None) -> Iterator[np.ndarray]:
        epoch, skip = divmod(start, self.per_epoch)
        while epochs is None or epoch < epochs:
            yield from self.epoch(epoch, skip)
            epoch, skip = epoch + 1, 0

    def windows(self, epoch: int) -> list[list[int]]:
        """Groups of shard numbers, in stream order."""
        n_shards = len(self.store.meta.shards)
        order = np.random.default_rng([self.seed, epoch]).permutation(n_shards) if self.shuffle else np.arange(n_shards)
        groups: list[list[int]] = []
        size = 0
        for k in order.tolist():
            if not groups or size + int(self.store.shard_sizes[k]) > self.buffer_tokens:
                groups.append([])
                size = 0
            groups[-1].append(k)
            size += int(self.store.shard_sizes[k])
        return groups

    def epoch(self, epoch: int, skip: int) -> Iterator[np.ndarray]:
        """Batches of one epoch, ``skip`` tokens in."""
        remaining = self.per_epoch - skip
        parts: list[np.ndarray] = []
        have = 0
        windows = self.windows(epoch)
        sizes = [int(self.store.shard_sizes[g].sum()) for g in windows]
        buf_TD: np.ndarray | None = None  # the in-memory shuffle buffer, reused window after window
        for w, (group, size) in enumerate(zip(windows, sizes)):
            if skip >= size:
                skip -= size
                continue
            if buf_TD is None:
                buf_TD = np.empty((max(sizes), self.store.d), self.store.storage.numpy)
            data_TD = self._load(group, buf_TD)
            perm = np.random.default_rng([self.seed, epoch, w]).permutation(size) if self.shuffle else None
            pos, skip = skip, 0
            while pos < size and remaining > 0:
                need = min(self.batch_size - have, size - pos, remaining)
                parts.append(data_TD[perm[pos : pos + need]] if perm is not None else data_TD[pos : pos + need])
                have, pos, remaining = have + need, pos + need, remaining - need
                if have == self.batch_size or (remaining == 0 and not self.drop_last):
                    yield np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])
                    parts, have = [], 0
            if remaining == 0:
                return


    def _load(self, group: list[int], buf_TD: np.ndarray) -> np.ndarray:
        a = 0
        for k in group:
            n = int(self.store.shard_sizes[k])
            self.store.read_shard_into(k, buf_TD[a : a + n])
            a += n
        return buf_TD[:a]


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
