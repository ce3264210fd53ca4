"""Read a store: random access, whole images in order, and shuffled training batches.

Shards are memory-mapped; nothing is loaded that a call does not ask for, so memory stays
flat however large the store grows. ``batches`` streams a deterministic shuffle (see
``visae.store.stream``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.artifact import read_marker
from visae.errors import VisaeError
from visae.store.format import KIND, StoreMeta, check_file, load_meta, read_image_table
from visae.store.stats import RunningStats


class ImageTokens(tuple):
    """``(tokens_TD, image_T, y_T, x_T)`` of whole images; also ``.kind_T``, ``.images``, ``.ids``."""

    tokens_TD: torch.Tensor
    image_T: np.ndarray
    y_T: np.ndarray
    x_T: np.ndarray
    kind_T: np.ndarray
    images: np.ndarray
    """Split indices of the images in this batch, in order."""
    ids: list[str]
    """Their id strings."""

    def __new__(cls, tokens_TD, rows_T, images, ids):  # type: ignore[no-untyped-def]
        self = super().__new__(cls, (tokens_TD, rows_T["image"], rows_T["y"], rows_T["x"]))
        self.tokens_TD, self.image_T, self.y_T, self.x_T = self
        self.kind_T, self.images, self.ids = rows_T["kind"], images, ids
        return self


class Store:
    """An activation store directory opened for reading.

    ``Store(path)`` refuses an incomplete store (an extraction still running or
    interrupted) unless ``allow_partial=True``; then it reads the committed shards.
    Every shard file (data, index, image table) is checked against its recorded checksum
    before its data is first used (``_file``; once per file per process).
    """

    def __init__(self, path: str | Path, *, allow_partial: bool = False):
        self.path = Path(path)
        marker = read_marker(self.path) if self.path.is_dir() else None
        if marker is None or marker.get("kind") != KIND:
            _explain_not_a_store(self.path, marker)
        self.meta: StoreMeta = load_meta(self.path)
        if not self.meta.complete and not allow_partial:
            raise VisaeError(
                f"store {self.path} is incomplete ({self.meta.n_images} of {self.meta.planned_images} images)",
                "finish it by rerunning the same `visae extract` command with --resume",
            )
        self.storage = self.meta.storage
        sizes = np.array([s.n_tokens for s in self.meta.shards], dtype=np.int64)
        self.shard_sizes = sizes
        self.shard_starts = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self._maps: dict[int, np.ndarray] = {}
        self._offsets: dict[int, int] = {}
        self._checked: set[tuple[int, str]] = set()

    # ------------------------------------------------------------ basics

    def __len__(self) -> int:
        return self.meta.n_tokens

    def __repr__(self) -> str:
        m = self.meta
        return f"Store({str(self.path)!r}: {m.n_tokens} tokens x {m.d} {m.dtype}, {m.backbone} {m.layer})"

    @property
    def d(self) -> int:
        return self.meta.d

    @property
    def complete(self) -> bool:
        return self.meta.complete

    @property
    def n_images(self) -> int:
        return self.meta.n_images

    @cached_property
    def _stats(self) -> RunningStats:
        if not self.meta.stats.file:
            raise VisaeError(f"store {self.path} has no committed tokens yet", "run `visae extract` to fill it")
        return RunningStats.load(stats_file(self.path, self.meta))

    @property
    def mean_D(self) -> torch.Tensor:
        """Per-dimension mean of all tokens (float32)."""
        return torch.from_numpy(self._stats.mean_D.astype(np.float32))

    @property
    def var_D(self) -> torch.Tensor:
        return torch.from_numpy(self._stats.var_D.astype(np.float32))

    @property
    def mean_sq_norm(self) -> float:
        """E ||x - mean_D||^2 over tokens."""
        return self.meta.stats.mean_sq_norm

    @property
    def scale(self) -> float:
        """Multiply centred tokens by this to make their mean squared norm equal D."""
        return math.sqrt(self.d / self.mean_sq_norm) if self.mean_sq_norm > 0 else 1.0

    @cached_property
    def index(self) -> np.ndarray:
        """Token index, one row per token: columns image (split index), kind, y, x, label."""
        return np.concatenate([np.asarray(self._index_map(k)) for k in range(len(self.meta.shards))])

    @cached_property
    def images(self) -> dict[str, Any]:
        """Per-image table: columns image (split index), id, label, token_start, n_tokens."""
        for k in range(len(self.meta.shards)):
            self._file(k, "images")
        return read_image_table(self.path, self.meta.shards)

    # ------------------------------------------------------------ shard files

    def _file(self, k: int, role: str) -> Path:
        """Path of shard ``k``'s ``role`` file (data, index or images), checked against its recorded
        checksum the first time (``visae.checksum.check_file``: once per file per process)."""
        shard = self.meta.shards[k]
        name = shard.files[role]
        path = self.path / name
        if (k, role) not in self._checked:
            expected = shard.checksums.get(name)
            repair = _REPAIR.format(path=self.path)
            if expected is None:
                raise VisaeError(f"{name} of store {self.path} has no recorded checksum in metadata.json", repair)
            check_file(path, expected, what=f"{name} of store {self.path}", repair=repair)
            self._checked.add((k, role))
        return path

    def check(self) -> "Store":
        """Check every committed shard file now (each once per process), so a stage that will read
        the whole store can refuse a damaged one before it writes anything; returns the store."""
        for k in range(len(self.meta.shards)):
            for role in ("data", "index", "images"):
                self._file(k, role)
        return self

    # ------------------------------------------------------------ random access

    def shard(self, k: int) -> np.ndarray:
        """Shard ``k`` as a read-only memory map (storage dtype: bf16 is uint16 bits)."""
        if k not in self._maps:
            self._maps[k] = np.load(self._file(k, "data"), mmap_mode="r")
        return self._maps[k]

    def read_rows_into(self, k: int, lo: int, out_TD: np.ndarray) -> None:
        """Read rows ``lo : lo + len(out_TD)`` of shard ``k`` into ``out_TD`` (one positioned read)."""
        offset = self._data_offset(k)
        with open(self._file(k, "data"), "rb") as f:
            f.seek(offset + lo * self.d * self.storage.itemsize)
            if f.readinto(memoryview(out_TD).cast("B")) != out_TD.nbytes:
                raise VisaeError(f"shard {k} of {self.path} is truncated", "run `visae store verify` on the store")

    def _data_offset(self, k: int) -> int:
        """Byte offset of shard ``k``'s data after its .npy header (checked against the metadata once)."""
        if k not in self._offsets:
            with open(self._file(k, "data"), "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                want = (int(self.shard_sizes[k]), self.d)
                if shape != want or dtype != self.storage.numpy:
                    raise VisaeError(f"shard {k} of {self.path} holds {shape} {dtype}", "run `visae store verify` on the store")
                self._offsets[k] = f.tell()
        return self._offsets[k]

    def index_rows(self, k: int, lo: int, hi: int) -> np.ndarray:
        """Token index rows ``lo:hi`` of shard ``k``."""
        return np.asarray(self._index_map(k)[lo:hi])

    def _index_map(self, k: int) -> np.ndarray:
        return np.load(self._file(k, "index"), mmap_mode="r")

    def get(self, idx: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Tokens at ``idx`` (an int, a slice or an array of ints) as a ``dtype`` tensor."""
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        scalar = np.ndim(idx) == 0
        idx_B = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if len(idx_B) and (idx_B.min() < -len(self) or idx_B.max() >= len(self)):
            raise IndexError(f"token index out of range for a store of {len(self)} tokens")
        idx_B = np.where(idx_B < 0, idx_B + len(self), idx_B)
        out_BD = np.empty((len(idx_B), self.d), dtype=self.storage.numpy)
        shard_B = np.searchsorted(self.shard_starts, idx_B, side="right") - 1
        for k in np.unique(shard_B):
            sel = np.flatnonzero(shard_B == k)
            rows = idx_B[sel] - self.shard_starts[k]
            order = np.argsort(rows, kind="stable")
            out_BD[sel[order]] = self.shard(int(k))[rows[order]]
        out = self.storage.to_torch(out_BD, dtype)
        return out[0] if scalar else out

    def __getitem__(self, idx: Any) -> torch.Tensor:
        return self.get(idx)

    def read_range(self, a: int, b: int) -> np.ndarray:
        """Tokens ``a:b`` in storage dtype, read sequentially across shards."""
        parts = []
        for k in range(int(np.searchsorted(self.shard_starts, a, side="right") - 1), len(self.meta.shards)):
            s0 = int(self.shard_starts[k])
            if s0 >= b:
                break
            # a fresh map per call, copied and dropped: resident pages do not pile up as the walk goes on
            parts.append(np.array(np.load(self._file(k, "data"), mmap_mode="r")[max(a - s0, 0) : b - s0]))
        return np.concatenate(parts) if parts else np.empty((0, self.d), self.storage.numpy)

    def index_range(self, a: int, b: int) -> np.ndarray:
        parts = []
        for k in range(int(np.searchsorted(self.shard_starts, a, side="right") - 1), len(self.meta.shards)):
            s0 = int(self.shard_starts[k])
            if s0 >= b:
                break
            parts.append(np.asarray(self._index_map(k)[max(a - s0, 0) : b - s0]))
        return np.concatenate(parts)

    # ------------------------------------------------------------ streams

    def iter_images(self, batch_images: int = 64, dtype: torch.dtype = torch.float32) -> Iterator[ImageTokens]:
        """All tokens of whole images, ``batch_images`` images at a time, in store order."""
        table = self.images
        end_T = table["token_start"] + table["n_tokens"]
        complete = end_T <= len(self)  # a partial store may end inside an image
        n = int(complete.sum())
        for i in range(0, n, batch_images):
            j = min(i + batch_images, n)
            a, b = int(table["token_start"][i]), int(end_T[j - 1])
            tokens_TD = self.storage.to_torch(self.read_range(a, b), dtype)
            yield ImageTokens(tokens_TD, self.index_range(a, b), table["image"][i:j], table["id"][i:j])

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        start: int = 0,
        epochs: int | None = 1,
        buffer_tokens: int | None = None,
        block_tokens: int | None = None,
        selection: Any = None,
        prefetch: int = 2,
        pin_memory: bool = False,
        drop_last: bool = True,
        part: tuple[int, int] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Training batches ``(batch_size, D)`` (rank ``r``'s part with ``part=(r, R)``): see ``visae.store.stream.batches``."""
        from visae.store.stream import batches

        return batches(
            self,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            dtype=dtype,
            start=start,
            epochs=epochs,
            buffer_tokens=buffer_tokens,
            block_tokens=block_tokens,
            selection=selection,
            prefetch=prefetch,
            pin_memory=pin_memory,
            drop_last=drop_last,
            part=part,
        )


_REPAIR = ("re-extract the store (its `visae extract` command with --force) or restore the file from a copy; "
           "`visae store verify {path}` lists every damaged file")


def stats_file(path: Path, meta: StoreMeta) -> Path:
    """The store's statistics file, checked against its recorded checksum (once per process; a store written
    before the checksum was recorded is read unchecked)."""
    f = path / str(meta.stats.file)
    if meta.stats.checksum:
        check_file(f, meta.stats.checksum, what=f"{meta.stats.file} of store {path}", repair=_REPAIR.format(path=path))
    return f


def _explain_not_a_store(path: Path, marker: dict[str, Any] | None) -> None:
    if not path.exists():
        raise VisaeError(f"store {path}: no such directory", "create one with `visae extract`")
    subs = sorted(p.name for p in path.iterdir() if (p / "metadata.json").is_file()) if path.is_dir() else []
    if subs:
        raise VisaeError(f"{path} holds one store per layer ({', '.join(subs)})", f"pass one of them, e.g. {path / subs[0]}")
    what = f"a visae {marker.get('kind')}" if marker else "no visae.json marker"
    raise VisaeError(f"{path} is not an activation store ({what})", "create one with `visae extract`")
