"""The activation store's on-disk format: metadata model, version gate, dtypes (checksums: visae.checksum).

A store is a directory::

    visae.json                 marker (kind "store", format_version)
    metadata.json              StoreMeta below; rewritten atomically after every shard (the commit point)
    shard_000000.npy ...       (n, D) activations; bf16 as uint16 bit patterns, fp16, or fp32
    index_000000.npy ...       (n,) structured token index: image, kind, y, x, label
    images_000000.json ...     the images whose first token lies in that shard (columns)
    stats_000012.safetensors   normalisation statistics after the first 12 shards

Every shard holds at most ``shard_tokens`` tokens: all but the last hold exactly that in a one-process store,
and a store merged from a torchrun job ends each rank's share with a partial shard. See docs/formats.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visae.checksum import (  # noqa: F401  (re-exported: the store's writer and verify import them from here)
    CHECKSUMS, HashingWriter, check_file, default_checksum, hash_file, new_hasher,
)
from visae.errors import VisaeError

FORMAT_VERSION = 1
"""Bumped whenever a reader of the previous version could misread a new store."""

KIND = "store"
"""Artifact kind in the visae.json marker."""

DTypeName = Literal["bf16", "fp16", "fp32"]

INDEX_DTYPE = np.dtype([("image", "<i8"), ("kind", "u1"), ("y", "<i2"), ("x", "<i2"), ("label", "<i4")])
"""One row per token: image = split index, kind 0 patch / 1 cls / 2 register / 3 pooled, y/x grid cell (-1 off-grid)."""

TOKEN_KINDS = {0: "patch", 1: "cls", 2: "register", 3: "pooled"}

KIND_CODES: dict[str, frozenset[int]] = {
    "patch": frozenset({0, 3}),  # grid cells of a map, patch tokens, or the pooled vector
    "cls": frozenset({1}),
    "registers": frozenset({2}),
    "all": frozenset({0, 1, 2, 3}),
}
"""A token selection (``--tokens``) -> the kind codes it takes."""


def kinds_held(meta: "StoreMeta") -> frozenset[int]:
    """Kind codes of the tokens a store holds (its extraction selection, within its layout)."""
    layout = meta.layout if isinstance(meta.layout, dict) else {}
    kind = layout.get("kind")
    present = {3} if kind == "pooled" else {0}
    if int(layout.get("n_cls", 0) or 0) > 0:
        present.add(1)
    if int(layout.get("n_registers", 0) or 0) > 0:
        present.add(2)
    return frozenset(present & KIND_CODES.get(meta.tokens, KIND_CODES["all"]))


# ---------------------------------------------------------------- dtypes


class StorageDType:
    """How one store dtype maps onto numpy (what is on disk) and torch (what is computed)."""

    def __init__(self, name: str, numpy: np.dtype, torch_dtype: torch.dtype, view_as: torch.dtype | None):
        self.name = name
        self.numpy = np.dtype(numpy)
        self.torch = torch_dtype
        self.view_as = view_as
        """Torch integer type with the same bits as the numpy array, where numpy lacks the float type."""

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def cast(self, acts: torch.Tensor) -> torch.Tensor:
        """Round float activations to this dtype (a torch tensor, still float)."""
        return acts.to(self.torch)

    def to_numpy(self, acts: torch.Tensor) -> np.ndarray:
        """A tensor already of ``self.torch`` -> the numpy array written to disk (no copy where possible)."""
        acts = acts.detach().cpu().contiguous()
        if self.view_as is not None:
            return acts.view(self.view_as).numpy().view(self.numpy)
        return acts.numpy()

    def to_torch(self, arr: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """An array read from disk -> a tensor of ``dtype`` (default: the stored float type)."""
        arr = np.ascontiguousarray(arr)
        if self.view_as is not None:
            t = torch.from_numpy(arr.view(np.int16)).view(self.torch)
        else:
            t = torch.from_numpy(arr)
        return t if dtype is None or dtype == t.dtype else t.to(dtype)


DTYPES: dict[str, StorageDType] = {
    # numpy has no bfloat16: the 16 bits are kept as uint16 and viewed as torch.bfloat16 on read.
    "bf16": StorageDType("bf16", np.uint16, torch.bfloat16, view_as=torch.int16),
    "fp16": StorageDType("fp16", np.float16, torch.float16, view_as=None),
    "fp32": StorageDType("fp32", np.float32, torch.float32, view_as=None),
}


def storage_dtype(name: str) -> StorageDType:
    try:
        return DTYPES[name]
    except KeyError:
        raise VisaeError(f"unknown store dtype '{name}'", f"use one of {', '.join(DTYPES)}") from None


# ---------------------------------------------------------------- metadata


class ShardInfo(BaseModel):
    """One committed shard and its companion files."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Shard number as six digits; files are shard_<name>.npy, index_<name>.npy, images_<name>.json."""
    n_tokens: int
    n_images: int
    """Images whose first token is in this shard (rows of images_<name>.json)."""
    checksums: dict[str, str]
    """file name -> 'algo:hexdigest' of the whole file."""

    @property
    def files(self) -> dict[str, str]:
        return {"data": f"shard_{self.name}.npy", "index": f"index_{self.name}.npy", "images": f"images_{self.name}.json"}


class SkippedImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: int
    """Split index."""
    id: str
    reason: str


class KindStats(BaseModel):
    """Scalars of one token kind's statistics (vectors under ``kind<code>/`` in the stats file)."""

    model_config = ConfigDict(extra="forbid")

    n: int = 0
    mean_sq_norm: float = 0.0


class Stats(BaseModel):
    """Scalars of the normalisation statistics; the vectors live in ``file``."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    """stats_<n_shards>.safetensors: mean_D, var_D (float32) and the float64 running state."""
    checksum: str | None = None
    """``file``'s checksum (None in stores written before visae recorded it: read unchecked)."""
    n: int = 0
    mean_sq_norm: float = 0.0
    """Mean over tokens of ||x - mean_D||^2 (float64 accumulation)."""
    by_kind: dict[str, KindStats] = Field(default_factory=dict)
    """Token kind code -> its own statistics, for stores that hold several kinds (CLS, registers, patches)."""


class StoreMeta(BaseModel):
    """metadata.json: everything the next stage needs, rewritten atomically after every shard."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    complete: bool = False
    """True once every planned image is in a committed shard."""
    backbone: str
    """Backbone spec string, e.g. 'hf:facebook/dinov2-small'."""
    random_init: bool = False
    position_match: bool = False
    """Some backbone weights were matched to the model by position (--allow-position-match), not by name."""
    weights_check: dict[str, Any] | None = None
    """The check of such weights (visae.backbones.check.WeightsCheck): top-1 on labelled images of the data."""
    layer: str
    layout: dict[str, Any]
    """TokenLayout.to_json() of the layer (kind, dim, grid, n_cls, n_registers, channels_last)."""
    tokens: str
    """Which tokens were kept: patch, cls, registers or all."""
    preprocess: dict[str, Any]
    dataset: str
    split: str
    dtype: DTypeName
    d: int
    shard_tokens: int
    n_tokens: int = 0
    n_images: int = 0
    """Images with tokens in committed shards."""
    planned_images: int
    """Images to extract: split indices 0 .. planned_images-1, or (with --max-images) a seeded random
    subset of that many, in increasing order (config.max_images and config.subset_seed say which)."""
    checksum: str
    """Checksum algorithm of every shard file."""
    shards: list[ShardInfo] = Field(default_factory=list)
    stats: Stats = Field(default_factory=Stats)
    skipped: list[SkippedImage] = Field(default_factory=list)
    """Images left out: undecodable, or non-finite activations under --skip-nonfinite."""
    config: dict[str, Any]
    """The extraction settings that must match for a resume."""

    @property
    def storage(self) -> StorageDType:
        return DTYPES[self.dtype]


def load_meta(path: str | Path) -> StoreMeta:
    """Read DIR/metadata.json, refusing versions this visae cannot read."""
    f = Path(path) / "metadata.json"
    if not f.is_file():
        raise VisaeError(f"{path} has no metadata.json", "it is not an activation store (or was never started)")
    try:
        raw = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VisaeError(f"{f} is unreadable ({e})", "the store is damaged; re-extract it with --force") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise VisaeError(f"{f} has no format_version", "it is not a visae activation store")
    if version > FORMAT_VERSION:
        raise VisaeError(
            f"store {path} has format version {version}, written by a newer visae (this one reads up to {FORMAT_VERSION})",
            "upgrade visae (pip install -U visae)",
        )
    try:
        return StoreMeta.model_validate(raw)
    except ValidationError as e:
        raise VisaeError(f"{f} is malformed ({e.errors()[0]['msg']})", "re-extract the store with --force") from None


def shard_name(k: int) -> str:
    return f"{k:06d}"


# ---------------------------------------------------------------- image table

IMAGE_COLUMNS = ("image", "id", "label", "token_start", "n_tokens")
"""Columns of images_<shard>.json: split index, id string, label, first token, token count."""


def empty_image_table() -> dict[str, list[Any]]:
    return {c: [] for c in IMAGE_COLUMNS}


def read_image_table(path: str | Path, shards: list[ShardInfo]) -> dict[str, Any]:
    """The per-image table of the committed shards as columns (numpy, ids as a list of str)."""
    table = empty_image_table()
    for shard in shards:
        f = Path(path) / shard.files["images"]
        try:
            part = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise VisaeError(f"{f} is missing or unreadable ({e})", "run `visae store verify` on the store") from None
        for c in IMAGE_COLUMNS:
            table[c].extend(part[c])
    return {
        "image": np.asarray(table["image"], dtype=np.int64),
        "id": [str(i) for i in table["id"]],
        "label": np.asarray(table["label"], dtype=np.int64),
        "token_start": np.asarray(table["token_start"], dtype=np.int64),
        "n_tokens": np.asarray(table["n_tokens"], dtype=np.int64),
    }
