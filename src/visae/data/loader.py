"""Batches of preprocessed images from any ``Split``, skipping unreadable ones.

``ImageLoader(split, preprocess, batch_size)`` yields ``Batch``es: normalised pixels, labels,
positions in the split, ids and (when the source has them) part maps fitted to the model
input exactly as the pixels were. Two paths, one behaviour:

- array-backed splits (``ArraySplit``: synth-aircraft, mnist5k) slice a whole batch out of
  their arrays and preprocess it in one vectorised call (``Preprocess.batch``);
- file-backed splits decode image by image in a torch ``DataLoader`` (``num_workers``
  processes). An image that raises ``CorruptImage`` is left out of its batch, recorded in
  ``skipped`` and reported once at the end of the epoch; a batch with no readable image is
  not yielded at all.

Order: without ``shuffle`` the split's order; with it, a permutation drawn from
``(seed, epoch)``, so every run with the same seed sees the same batches. Each batch's
indices are sorted (memory-mapped reads stay sequential; the batch's contents are unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data

from visae.data.base import ArraySplit, CorruptImage, Split
from visae.data.transforms import Preprocess
from visae.errors import VisaeError
from visae.progress import warn


@dataclass
class Batch:
    pixels_BCHW: torch.Tensor
    """float32, normalised by the Preprocess."""
    labels_B: torch.Tensor
    """int64 labels (-1 where unknown, e.g. out-of-distribution images)."""
    indices_B: torch.Tensor
    """int64 positions in the split."""
    ids: list[str]
    """Image ids, aligned with the batch."""
    parts_BHW: torch.Tensor | None
    """uint8 part maps resized (nearest) and cropped like the pixels, if the source has parts."""

    def __len__(self) -> int:
        return len(self.ids)

    def pin_memory(self) -> "Batch":
        """The batch with its pixels in page-locked memory (the DataLoader's pin thread calls this)."""
        self.pixels_BCHW = self.pixels_BCHW.pin_memory()
        return self


class ImageLoader:
    """Iterate a split in batches of preprocessed images; ``len()`` is the number of batches."""

    def __init__(
        self,
        split: Split,
        preprocess: Preprocess,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        indices: np.ndarray | list[int] | None = None,
        num_workers: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        drop_last: bool = False,
        pin_memory: bool = False,
    ):
        """``indices`` restricts the loader to those positions of the split (in that order
        when not shuffled). ``num_workers`` decoding processes serve file-backed splits;
        array-backed ones are sliced in the calling process. ``augment`` maps a normalised
        (B, 3, S, S) batch to another; since it may move pixels, augmented batches carry no
        part maps (``parts_BHW`` is None). ``pin_memory`` puts each batch's pixels in page-locked
        memory (for fast, non-blocking copies to a GPU; a no-op where torch sees no GPU)."""
        if batch_size < 1:
            raise VisaeError(f"batch size must be at least 1 (got {batch_size})", "pass a positive --batch-size")
        if num_workers < 0:
            raise VisaeError(f"num_workers must be >= 0 (got {num_workers})", "pass 0 to decode in the main process")
        self.split = split
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_workers = num_workers
        self.augment = augment
        self.drop_last = drop_last
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.indices = _check_indices(indices, len(split), split.name)
        self.epoch = 0
        """The next epoch to iterate; it picks the shuffle permutation. Set it to resume."""
        self.skipped: list[tuple[str, str]] = []
        """(image_id, reason) of every image skipped so far, over all epochs."""

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The sorted split positions of each batch of ``epoch``."""
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        chunks = [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        if self.drop_last and chunks and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        return [np.sort(c) for c in chunks]

    def __iter__(self) -> Iterator[Batch]:
        chunks = self.batch_indices(self.epoch)
        self.epoch += 1
        before = len(self.skipped)
        batches = self._array_batches(chunks) if isinstance(self.split, ArraySplit) else self._decoded_batches(chunks)
        for batch in batches:
            if self.augment is not None:
                batch.pixels_BCHW = self.augment(batch.pixels_BCHW)
                batch.parts_BHW = None
            if self.pin_memory and not batch.pixels_BCHW.is_pinned():
                batch.pixels_BCHW = batch.pixels_BCHW.pin_memory()
            yield batch
        new = self.skipped[before:]
        if new:
            image_id, reason = new[0]
            warn(f"skipped {len(new)} unreadable image{'s' * (len(new) != 1)} (first: {image_id}: {reason})")

    def _array_batches(self, chunks: list[np.ndarray]) -> Iterator[Batch]:
        split: ArraySplit = self.split  # type: ignore[assignment]
        for idx_B in chunks:
            parts = None if self.augment is not None else split.parts(idx_B)
            yield Batch(
                pixels_BCHW=self.preprocess.batch(split.images(idx_B)),
                labels_B=torch.from_numpy(np.asarray(split.labels_at(idx_B), dtype=np.int64)),
                indices_B=torch.from_numpy(idx_B.astype(np.int64)),
                ids=[split.image_id(int(i)) for i in idx_B],
                parts_BHW=None if parts is None else fit_parts(torch.from_numpy(np.asarray(parts)), self.preprocess),
            )

    def _decoded_batches(self, chunks: list[np.ndarray]) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(
            _Decode(self.split, self.preprocess),
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.pin_memory and self.augment is None,  # pinned in the DataLoader's own thread
        )
        for batch, skipped in loader:
            self.skipped.extend(skipped)
            if batch is not None:
                yield batch


def fit_parts(parts_BHW: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """Part maps resized (nearest) and centre-cropped by the same geometry as the pixels."""
    h, w = parts_BHW.shape[-2:]
    rh, rw, top, left = preprocess.geometry(h, w)
    if (rh, rw) != (h, w):
        parts_BHW = F.interpolate(parts_BHW[:, None], size=(rh, rw), mode="nearest-exact")[:, 0]
    return parts_BHW[:, top : top + preprocess.size, left : left + preprocess.size].contiguous()


class _Skipped(NamedTuple):
    image_id: str
    reason: str


class _Decode(torch.utils.data.Dataset):
    """Position -> (position, pixels, label, id, parts), or ``_Skipped`` for an unreadable image."""

    def __init__(self, split: Split, preprocess: Preprocess):
        self.split = split
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        try:
            s = self.split[i]
        except CorruptImage as e:
            return _Skipped(e.image_id, e.reason)
        parts = None if s.parts_HW is None else fit_parts(torch.from_numpy(np.asarray(s.parts_HW))[None], self.preprocess)[0]
        return (i, self.preprocess(s.image_HWC), s.label, s.image_id, parts)


def _collate(items: list[tuple]) -> tuple[Batch | None, list[tuple[str, str]]]:
    good = [it for it in items if not isinstance(it, _Skipped)]
    skipped = [(it.image_id, it.reason) for it in items if isinstance(it, _Skipped)]
    if not good:
        return None, skipped
    parts = [it[4] for it in good]
    batch = Batch(
        pixels_BCHW=torch.stack([it[1] for it in good]),
        labels_B=torch.tensor([it[2] for it in good], dtype=torch.int64),
        indices_B=torch.tensor([it[0] for it in good], dtype=torch.int64),
        ids=[it[3] for it in good],
        parts_BHW=None if any(p is None for p in parts) else torch.stack(parts),
    )
    return batch, skipped


def _check_indices(indices: np.ndarray | list[int] | None, n: int, name: str) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise VisaeError(f"indices out of range for split '{name}' of {n} images", f"use positions 0..{n - 1}")
    return idx % n if n else idx
