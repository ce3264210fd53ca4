"""Append tokens to a store, one atomically committed shard at a time.

``add`` fills an in-memory shard buffer; a full buffer is written (temp file, fsync,
rename) with its token index and image table, folded into the running statistics, and
then committed by rewriting metadata.json. A killed process loses at most the shard it
was filling; ``StoreWriter.reopen`` + ``resume_from`` continue exactly where the last
commit ended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.artifact import write_marker
from visae.atomic import atomic_path, write_json
from visae.store.format import (
    FORMAT_VERSION,
    INDEX_DTYPE,
    KIND,
    HashingWriter,
    hash_file,
    ShardInfo,
    SkippedImage,
    KindStats,
    Stats,
    StoreMeta,
    empty_image_table,
    kinds_held,
    load_meta,
    read_image_table,
    shard_name,
)
from visae.store.stats import RunningStats

_SHARD_FILE = re.compile(r"^(shard|index|images)_(\d{6})\.(npy|json)$")
_STATS_FILE = re.compile(r"^stats_\d{6}\.safetensors$")


class StoreWriter:
    """Writes one store directory; create with ``create`` or continue with ``reopen``."""

    def __init__(self, path: Path, meta: StoreMeta, stats: RunningStats, last_image: int,
                 by_kind: dict[int, RunningStats] | None = None):
        self.path = path
        self.meta = meta
        self.storage = meta.storage
        self.stats = stats
        self.by_kind = by_kind if by_kind is not None else ({c: RunningStats(meta.d) for c in kinds_held(meta)}
                                                             if len(kinds_held(meta)) > 1 else {})
        """Statistics of each token kind, kept when the store holds several (CLS, registers, patches)."""
        self._last_image = last_image
        """Largest split index whose first token has been accepted (listed or pending)."""
        self._skip = 0
        """Tokens still to drop because a committed shard already holds them (resume)."""
        self._fill = 0
        self._buf_TD = np.empty((meta.shard_tokens, meta.d), dtype=self.storage.numpy)
        self._rows_T = np.empty(meta.shard_tokens, dtype=INDEX_DTYPE)
        self._pending: list[dict[str, Any]] = []

    # ------------------------------------------------------------ open

    @classmethod
    def create(cls, path: str | Path, meta: StoreMeta) -> "StoreWriter":
        """Start an empty store in ``path`` (an empty directory prepared by the caller)."""
        path = Path(path)
        write_marker(path, KIND, format_version=FORMAT_VERSION)
        write_json(path / "metadata.json", meta.model_dump(mode="json"))
        return cls(path, meta, RunningStats(meta.d), last_image=-1)

    @classmethod
    def reopen(cls, path: str | Path) -> "StoreWriter":
        """Continue a store: drop files of uncommitted shards, reload the statistics checkpoint."""
        path = Path(path)
        meta = load_meta(path)
        _remove_uncommitted(path, meta)
        from visae.store.reader import stats_file

        stats = RunningStats.load(stats_file(path, meta)) if meta.stats.file else RunningStats(meta.d)
        by_kind = RunningStats.load_by_kind(stats_file(path, meta)) if meta.stats.file and meta.stats.by_kind else None
        table = read_image_table(path, meta.shards)
        last = int(table["image"][-1]) if len(table["image"]) else -1
        return cls(path, meta, stats, last_image=last, by_kind=by_kind)

    def resume_point(self) -> int:
        """Split index of the first image not entirely inside committed shards."""
        table = read_image_table(self.path, self.meta.shards)
        if not len(table["image"]):
            return 0
        end = table["token_start"][-1] + table["n_tokens"][-1]
        last = int(table["image"][-1])
        return last + 1 if end <= self.meta.n_tokens else last

    def resume_from(self, start_image: int) -> None:
        """Prepare to receive the tokens of images ``start_image ..`` again, dropping the committed ones."""
        table = read_image_table(self.path, self.meta.shards)
        before = table["image"] < start_image
        self._skip = self.meta.n_tokens - int(table["n_tokens"][before].sum())
        self.meta.skipped = [s for s in self.meta.skipped if s.image < start_image]
        self.meta.complete = False

    # ------------------------------------------------------------ append

    def skip_image(self, image: int, image_id: str, reason: str) -> None:
        """Record an image left out (committed with the next shard)."""
        self.meta.skipped.append(SkippedImage(image=image, id=image_id, reason=reason))

    def add(self, acts_TD: torch.Tensor, rows_T: np.ndarray, ids: Mapping[int, str]) -> None:
        """Append tokens (all tokens of each image in one call) with their index rows."""
        data_TD = self.storage.to_numpy(self.storage.cast(acts_TD))
        if data_TD.shape[1:] != (self.meta.d,) or len(data_TD) != len(rows_T):
            raise ValueError(f"tokens {tuple(data_TD.shape)} / rows {len(rows_T)} do not fit d={self.meta.d}")
        if self._skip:
            k = min(self._skip, len(rows_T))
            data_TD, rows_T, self._skip = data_TD[k:], rows_T[k:], self._skip - k
        self._note_new_images(rows_T, ids)
        pos = 0
        while pos < len(rows_T):
            take = min(self.meta.shard_tokens - self._fill, len(rows_T) - pos)
            self._buf_TD[self._fill : self._fill + take] = data_TD[pos : pos + take]
            self._rows_T[self._fill : self._fill + take] = rows_T[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self.meta.shard_tokens:
                self._flush()

    def _note_new_images(self, rows_T: np.ndarray, ids: Mapping[int, str]) -> None:
        if not len(rows_T):
            return
        image_T = rows_T["image"]
        starts = np.flatnonzero(np.r_[True, image_T[1:] != image_T[:-1]])
        counts = np.diff(np.r_[starts, len(image_T)])
        base = self.meta.n_tokens + self._fill
        for s, n in zip(starts.tolist(), counts.tolist()):
            image = int(image_T[s])
            if image <= self._last_image:
                if s != 0:
                    raise ValueError(f"image {image} arrived out of order")
                continue  # the rest of an image whose first tokens are already in the store
            self._last_image = image
            self._pending.append(
                {"image": image, "id": ids[image], "label": int(rows_T["label"][s]), "token_start": base + s, "n_tokens": n}
            )

    # ------------------------------------------------------------ commit

    def close(self) -> None:
        """Commit the last (partial) shard and mark the store complete."""
        self.meta.complete = True
        if self._fill:
            self._flush()
        else:
            write_json(self.path / "metadata.json", self.meta.model_dump(mode="json"))

    def _flush(self) -> None:
        k, n = len(self.meta.shards), self._fill
        name = shard_name(k)
        end = self.meta.n_tokens + n
        images = [p for p in self._pending if p["token_start"] < end]
        self._pending = self._pending[len(images) :]
        info = ShardInfo(name=name, n_tokens=n, n_images=len(images), checksums={})
        files = info.files
        info.checksums[files["data"]] = self._save_npy(files["data"], self._buf_TD[:n])
        info.checksums[files["index"]] = self._save_npy(files["index"], self._rows_T[:n])
        info.checksums[files["images"]] = self._save_images(files["images"], images)
        self._update_stats(n)
        stats_file = f"stats_{k + 1:06d}.safetensors"
        self.stats.save(self.path / stats_file, self.by_kind)
        old_stats = self.meta.stats.file
        self.meta.shards.append(info)
        self.meta.n_tokens = end
        self.meta.n_images += len(images)
        self.meta.stats = Stats(file=stats_file, checksum=hash_file(self.path / stats_file, self.meta.checksum),
                                n=self.stats.n, mean_sq_norm=self.stats.mean_sq_norm,
                                by_kind={str(c): KindStats(n=st.n, mean_sq_norm=st.mean_sq_norm) for c, st in self.by_kind.items()})
        write_json(self.path / "metadata.json", self.meta.model_dump(mode="json"))  # the commit point
        if old_stats and old_stats != stats_file:
            (self.path / old_stats).unlink(missing_ok=True)
        self._fill = 0

    def _update_stats(self, n: int, chunk: int = 8192) -> None:
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            x_TD = self.storage.to_torch(self._buf_TD[a:b])
            self.stats.update(x_TD)
            kind_T = self._rows_T["kind"][a:b]
            for code, st in self.by_kind.items():
                sel_T = kind_T == code
                if sel_T.any():
                    st.update(x_TD[torch.from_numpy(sel_T)])

    def _save_npy(self, name: str, arr: np.ndarray) -> str:
        """Write a .npy file (the same bytes as np.save) and return its checksum."""
        arr = np.ascontiguousarray(arr)
        with atomic_path(self.path / name) as tmp, open(tmp, "wb") as f:
            w = HashingWriter(f, self.meta.checksum)
            np.lib.format.write_array_header_1_0(w, np.lib.format.header_data_from_array_1_0(arr))
            w.write(arr.reshape(-1).view(np.uint8).data)
        return w.digest()

    def _save_images(self, name: str, images: list[dict[str, Any]]) -> str:
        table = empty_image_table()
        for row in images:
            for c, v in row.items():
                table[c].append(v)
        data = json.dumps(table).encode()
        with atomic_path(self.path / name) as tmp, open(tmp, "wb") as f:
            w = HashingWriter(f, self.meta.checksum)
            w.write(data)
        return w.digest()


def _remove_uncommitted(path: Path, meta: StoreMeta) -> None:
    n = len(meta.shards)
    for f in path.iterdir():
        m = _SHARD_FILE.match(f.name)
        stale = (m is not None and int(m.group(2)) >= n) or (_STATS_FILE.match(f.name) and f.name != meta.stats.file)
        if stale or (f.name.startswith(".") and f.name.endswith(".tmp")):
            f.unlink(missing_ok=True)
