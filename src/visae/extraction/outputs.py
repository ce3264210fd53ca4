"""Where each layer's store goes, and whether it is created, resumed or refused.

One layer: ``--out`` is the store. Several: ``--out`` gets a ``store-set`` marker and one
store per layer in ``--out/<layer>``. A store already in place is resumed when its
recorded settings equal the new ones, and refused (naming what changed) otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visae.artifact import prepare_out, read_marker, write_marker
from visae.errors import VisaeError
from visae.extraction.config import ExtractConfig, auto_shard_tokens
from visae.progress import info
from visae.registry import absolute_spec
from visae.store.format import KIND, StoreMeta, default_checksum, load_meta, storage_dtype
from visae.store.writer import StoreWriter

SET_KIND = "store-set"
"""Marker kind of a directory holding one store per layer."""


@dataclass
class Target:
    """One layer being extracted into one store."""

    layer: str
    path: Path
    layout: Any
    """The layer's TokenLayout."""
    writer: StoreWriter


def layer_dir(layer: str) -> str:
    """A layer name as a directory name ('encoder.stages.3' stays as it is)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer)


def fingerprint(cfg: ExtractConfig, layer: str, preprocess: dict[str, Any], shard_tokens: int,
                data_fingerprint: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The settings a resumed extraction must share with the run it continues, and the identity of
    the images (``visae.identity.dataset_identity`` of the split: the same spec must still name the
    same images).

    What only changes where or how fast the work runs (device, workers) is left out, so a
    store begun on a GPU can be finished on a CPU and the other way round.
    """
    return ({"data_fingerprint": data_fingerprint} if data_fingerprint else {}) | {
        "model": cfg.model,
        "random_init": cfg.random_init,
        "layer": layer,
        "data": cfg.data,
        "split": cfg.split,
        "tokens": cfg.tokens,
        "dtype": cfg.dtype,
        "batch_size": cfg.batch_size,
        "shard_tokens": shard_tokens,
        "max_images": cfg.max_images,
        "subset_seed": cfg.seed if cfg.max_images is not None else None,
        "preprocess": preprocess,
    }


def new_meta(cfg: ExtractConfig, layer: str, layout: Any, preprocess: dict[str, Any], split: str, planned: int,
             data_fingerprint: str | None = None, weights_check: dict[str, Any] | None = None) -> StoreMeta:  # fmt: skip
    shard_tokens = cfg.shard_tokens or auto_shard_tokens(layout.dim, storage_dtype(cfg.dtype).itemsize)
    return StoreMeta(
        backbone=cfg.model,
        random_init=cfg.random_init,
        position_match=weights_check is not None,
        weights_check=weights_check,
        layer=layer,
        layout=layout.to_json(),
        tokens=cfg.tokens,
        preprocess=preprocess,
        dataset=cfg.data,
        split=split,
        dtype=cfg.dtype,
        d=layout.dim,
        shard_tokens=shard_tokens,
        planned_images=planned,
        checksum=default_checksum(),
        config=fingerprint(cfg, layer, preprocess, shard_tokens, data_fingerprint),
    )


def store_paths(cfg: ExtractConfig, layers: list[str]) -> dict[str, Path]:
    """Layer -> store directory; prepares the store-set directory for several layers."""
    if len(layers) == 1:
        return {layers[0]: Path(cfg.out)}
    root = prepare_out(cfg.out, SET_KIND, force=cfg.force, resume=not cfg.force)
    write_marker(root, SET_KIND, layers=layers, dirs={l: layer_dir(l) for l in layers})
    dirs = [layer_dir(l) for l in layers]
    if len(set(dirs)) != len(dirs):
        raise VisaeError("two layers map to the same directory name", "extract them into separate --out directories")
    return {l: root / d for l, d in zip(layers, dirs)}


def open_writer(path: Path, meta: StoreMeta, cfg: ExtractConfig) -> StoreWriter:
    """Create the store, or reopen the one in ``path`` when its settings match."""
    marker = read_marker(path) if path.is_dir() else None
    if cfg.force or marker is None or marker.get("kind") != KIND:
        prepare_out(path, KIND, force=cfg.force)
        return StoreWriter.create(path, meta)
    old = load_meta(path)
    old.config.update({k: absolute_spec(old.config[k]) for k in ("model", "data") if isinstance(old.config.get(k), str)})  # as typed before 0.3
    changed = [k for k in sorted(set(old.config) | set(meta.config)) if old.config.get(k) != meta.config.get(k)
               and (k != "data_fingerprint" or k in old.config)]  # stores from before it was recorded: not checked
    if changed:
        what = ", ".join(f"{k}: {old.config.get(k)!r} -> {meta.config.get(k)!r}" if k != "data_fingerprint"
                         else f"the images of {cfg.data} are not the ones it began with" for k in changed[:3])  # fmt: skip
        raise VisaeError(
            f"{path} holds a store extracted with other settings ({what})",
            "rerun with the original settings to resume it, pass --force to replace it, or choose another --out",
        )
    writer = StoreWriter.reopen(path)
    if writer.meta.complete:
        info(f"{path}: already extracted ({writer.meta.n_tokens} tokens); pass --force to redo it")
    else:
        info(f"{path}: resuming after {len(writer.meta.shards)} committed shards ({writer.meta.n_tokens} tokens)")
    return writer
