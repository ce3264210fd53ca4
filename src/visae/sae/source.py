"""The trainer's data input: anything with the activation store's reading methods.

``visae.store.Store`` is one; ``TensorSource`` wraps an in-memory [N, D] tensor (tests,
notebooks, activations computed elsewhere) with the same semantics.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from visae.errors import VisaeError


@runtime_checkable
class TokenSource(Protocol):
    """What the trainer reads: a token count, statistics and shuffled batches."""

    d: int
    mean_D: Tensor
    scale: float
    meta: Any

    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        start: int = 0,
        epochs: int | None = None,
        drop_last: bool = True,
        part: tuple[int, int] | None = None,
    ) -> Iterator[Tensor]: ...

    def sample(self, n: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Up to ``n`` tokens drawn without replacement (seeded)."""
        ...

    def chunks(self, chunk_tokens: int = 65_536, dtype: torch.dtype = torch.float32,
               max_tokens: int | None = None) -> Iterator[Tensor]:  # fmt: skip
        """Every token in a fixed order, ``chunk_tokens`` at a time (at most ``max_tokens``)."""
        ...


class TensorSource:
    """An in-memory token source over ``acts_ND`` (statistics computed on construction).

    ``batches(..., start=t)`` yields exactly what an iterator started at 0 would yield
    after ``t`` tokens: each epoch is a fresh permutation seeded by ``(seed, epoch)``.
    ``part=(r, R)`` yields rank ``r``'s rows of it, those at positions ``i % R == r``, in local
    batches of ``batch_size`` (``start`` counts the rank's tokens); every rank gets
    ``floor((N // R) / batch_size)`` batches per epoch, a rank's surplus row is dropped.
    """

    def __init__(self, acts_ND: Tensor, meta: Any = None):
        if acts_ND.ndim != 2 or acts_ND.shape[0] == 0:
            raise VisaeError(f"a token source needs a non-empty [N, D] tensor, got {tuple(acts_ND.shape)}", "pass tokens as rows")
        self.acts_ND = acts_ND
        self.d = acts_ND.shape[1]
        acts = acts_ND.double()
        self.mean_D = acts.mean(dim=0).float()
        msq = (acts - acts.mean(dim=0)).pow(2).sum(dim=1).mean()
        self.scale = float((self.d / msq).sqrt()) if msq > 0 else 1.0
        self.meta = meta or {}

    def __len__(self) -> int:
        return self.acts_ND.shape[0]

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        start: int = 0,
        epochs: int | None = None,
        drop_last: bool = True,
        part: tuple[int, int] | None = None,
    ) -> Iterator[Tensor]:
        N = len(self)
        r, R = part or (0, 1)
        if part is not None and not (0 <= r < R and drop_last):
            raise VisaeError(f"part=(rank, ranks) needs 0 <= rank < ranks and drop_last, got part={part}, drop_last={drop_last}",
                             "pass torchrun's rank and world size, and drop_last=True")  # fmt: skip
        n = N // R  # rows of the poorest rank
        per_epoch = (n // batch_size) * batch_size if drop_last else N
        if per_epoch == 0:
            ranks = f" per rank over {R} ranks" if part is not None else ""
            raise VisaeError(f"batch size {batch_size} is larger than the {n} tokens available{ranks}",
                             "lower --batch-size" + (" or use fewer ranks" if part is not None else ""))  # fmt: skip
        epoch, offset = divmod(start, per_epoch)
        while epochs is None or epoch < epochs:
            order = (self._order(epoch, seed) if shuffle else torch.arange(N))[r::R]
            for i in range(offset, per_epoch, batch_size):
                yield self.acts_ND[order[i : i + batch_size]].to(dtype)
            epoch, offset = epoch + 1, 0

    def _order(self, epoch: int, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(len(self), generator=g)

    def get(self, idx: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.acts_ND[torch.as_tensor(np.asarray(idx), dtype=torch.long)].to(dtype)

    def sample(self, n: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
        rng = np.random.default_rng(seed)
        return self.get(np.sort(rng.choice(len(self), size=min(n, len(self)), replace=False)), dtype)

    def chunks(self, chunk_tokens: int = 65_536, dtype: torch.dtype = torch.float32,
               max_tokens: int | None = None) -> Iterator[Tensor]:  # fmt: skip
        end = len(self) if max_tokens is None else min(max_tokens, len(self))
        for a in range(0, end, chunk_tokens):
            yield self.acts_ND[a : min(a + chunk_tokens, end)].to(dtype)

    def split(self, share: float, max_tokens: int, seed: int) -> tuple["TensorSource", "TensorSource"]:
        """(training rows, held-out rows): a seeded random ``share`` of the rows, at most ``max_tokens``,
        kept out (an in-memory source has no images, so rows are held out one by one)."""
        n = len(self)
        m = int(np.clip(min(np.ceil(share * n), max_tokens), 1, n - 1))
        order = torch.from_numpy(np.random.default_rng([seed, 0x401D]).permutation(n))
        held, kept = order[:m].sort().values, order[m:].sort().values
        train = copy.copy(self)  # keeps a subclass's behaviour (tests wrap batches())
        TensorSource.__init__(train, self.acts_ND[kept], self.meta)
        return train, TensorSource(self.acts_ND[held], self.meta)
