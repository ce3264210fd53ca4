"""The trainer's data input: anything with the activation store's reading methods.

``visae.store.Store`` is one; ``TensorSource`` wraps an in-memory [N, D] tensor (tests,
notebooks, activations computed elsewhere) with the same semantics.
"""

from __future__ import annotations

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
    ) -> Iterator[Tensor]: ...

    def get(self, idx: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor: ...


class TensorSource:
    """An in-memory token source over ``acts_ND`` (statistics computed on construction).

    ``batches(..., start=t)`` yields exactly what an iterator started at 0 would yield
    after ``t`` tokens: each epoch is a fresh permutation seeded by ``(seed, epoch)``.
    """

    def __init__(self, acts_ND: Tensor, meta: Any = None):
        if acts_ND.ndim != 2 or acts_ND.shape[0] == 0:
            raise VisaeError(f"a token source needs a non-empty [N, D] tensor, got {tuple(acts_ND.shape)}")
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
    ) -> Iterator[Tensor]:
        N = len(self)
        per_epoch = (N // batch_size) * batch_size if drop_last else N
        if per_epoch == 0:
            raise VisaeError(f"batch size {batch_size} is larger than the {N} tokens available")
        epoch, offset = divmod(start, per_epoch)
        while epochs is None or epoch < epochs:
            order = self._order(epoch, seed) if shuffle else torch.arange(N)
            for i in range(offset, per_epoch, batch_size):
                yield self.acts_ND[order[i : i + batch_size]].to(dtype)
            epoch, offset = epoch + 1, 0

    def _order(self, epoch: int, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(len(self), generator=g)

    def get(self, idx: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.acts_ND[torch.as_tensor(np.asarray(idx), dtype=torch.long)].to(dtype)
