"""Identities of a stage's inputs, so a resume can tell that it reads what the run began with.

An identity is a small JSON object: a few readable facts (for the error message) and a
``fingerprint``, a hash of everything that names the content. It is cheap: a store's comes
from its metadata (per-shard checksums, sizes, backbone, layer), never from reading shards;
a dataset's from its class names, split sizes and a sample of image ids and labels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from visae.errors import VisaeError

SAMPLE = 32
"""Images per split whose id and label enter a dataset's fingerprint."""


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def store_identity(store: Any) -> dict[str, Any] | None:
    """The identity of an activation store (None for a source that is not one, e.g. tensors in memory)."""
    meta = getattr(store, "meta", None)
    if meta is None or not hasattr(meta, "shards"):
        return None
    facts = {"backbone": meta.backbone, "layer": meta.layer, "d": meta.d, "dataset": meta.dataset,
             "split": meta.split, "n_images": meta.n_images, "n_tokens": meta.n_tokens}  # fmt: skip
    content = {**facts, "dtype": meta.dtype, "tokens": meta.tokens, "complete": meta.complete,
               "shards": [[s.name, s.n_tokens, sorted(s.checksums.items())] for s in meta.shards]}  # fmt: skip
    return {"path": str(Path(store.path).resolve()), **facts, "fingerprint": digest(content)}


def dataset_identity(ds: Any, splits: list[Any]) -> dict[str, Any]:
    """The identity of a dataset as a stage reads it: its classes and the splits it uses."""
    facts: dict[str, Any] = {"data": ds.spec, "classes": len(ds.class_names)}
    content: dict[str, Any] = {"class_names": list(ds.class_names), "info": getattr(ds, "info", None)}
    for split in splits:
        n = len(split)
        picks = sorted({i * n // SAMPLE for i in range(SAMPLE)}) if n else []
        facts[f"{split.name} images"] = n
        content[split.name] = [n, [[split.image_id(i), int(split.label(i))] for i in picks]]
    return {**facts, "fingerprint": digest(content)}


def check_same(recorded: dict[str, Any] | None, now: dict[str, Any] | None, what: str, out: Path) -> None:
    """Refuse a resume whose input (``what``: "store", "dataset") is not the one recorded when the run began."""
    if not recorded or not now or recorded.get("fingerprint") == now.get("fingerprint"):
        return
    keys = [k for k in recorded if k not in ("fingerprint", "path") and recorded.get(k) != now.get(k)]
    changed = ", ".join(f"{k}: {recorded.get(k)!r} -> {now.get(k)!r}" for k in keys[:3]) or "its contents differ"
    raise VisaeError(
        f"cannot resume {out}: the {what} is not the one the run began with ({changed})",
        f"resume against the original {what}, or pass --force to start over",
    )
