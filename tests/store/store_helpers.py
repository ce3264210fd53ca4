"""Build small stores directly with the writer (no backbone needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from visae.store import StoreMeta, StoreWriter
from visae.store.format import INDEX_DTYPE


def make_meta(d: int, shard_tokens: int, planned: int, dtype: str = "fp32", checksum: str = "sha256") -> StoreMeta:
    return StoreMeta(
        backbone="test:none", layer="layer", layout={"kind": "spatial", "dim": d, "grid": [1, 1]}, tokens="patch",
        preprocess={}, dataset="test:none", split="train", dtype=dtype, d=d, shard_tokens=shard_tokens,
        planned_images=planned, checksum=checksum, config={"test": True},
    )  # fmt: skip


def image_rows(image: int, n: int, label: int) -> np.ndarray:
    rows = np.zeros(n, dtype=INDEX_DTYPE)
    rows["image"], rows["label"] = image, label
    rows["y"], rows["x"] = np.arange(n) // 4, np.arange(n) % 4
    return rows


def write_store(path: Path, acts_ITD: list[torch.Tensor], *, shard_tokens: int, dtype: str = "fp32",
                checksum: str = "sha256", stop_after: int | None = None) -> StoreWriter:
    """One image per tensor in ``acts_ITD``; ``stop_after`` images then return without closing (a crash)."""
    w = StoreWriter.create(path, make_meta(acts_ITD[0].shape[1], shard_tokens, len(acts_ITD), dtype, checksum))
    for i, acts_TD in enumerate(acts_ITD):
        if stop_after is not None and i == stop_after:
            return w
        w.add(acts_TD, image_rows(i, len(acts_TD), i % 3), {i: f"img{i}"})
    w.close()
    return w


def write_vit_like_store(path: Path, n_images: int) -> Path:
    """``n_images`` images of a ViT-like layer (d 2, shards of 16 tokens): 1 CLS token (value 1000 + image) then
    4 patches (value 10 * image + cell); column 1 holds the image number."""
    meta = make_meta(2, 16, n_images).model_copy(update={
        "layout": {"kind": "sequence", "dim": 2, "grid": [2, 2], "n_cls": 1, "n_registers": 0}, "tokens": "all"})  # fmt: skip
    w = StoreWriter.create(path, meta)
    for i in range(n_images):
        rows = np.zeros(5, dtype=INDEX_DTYPE)
        rows["image"], rows["label"], rows["kind"] = i, i % 3, [1, 0, 0, 0, 0]
        vals = torch.tensor([1000.0 + i] + [10.0 * i + c for c in range(4)])
        w.add(torch.stack([vals, torch.full((5,), float(i))], 1), rows, {i: f"img{i}"})
    w.close()
    return path
