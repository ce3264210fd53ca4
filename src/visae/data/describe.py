"""``describe(spec)``: what a data source holds, as a JSON-able dict (for ``visae data info``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from visae.data.base import ArraySplit, Split, open_dataset
from visae.progress import track


def describe(spec: str) -> dict[str, Any]:
    """Splits and their sizes, classes (with per-split counts), hierarchy levels, part names.

    Image files are checked (``Split.unreadable``: their headers, not a full decode) and only the
    readable ones counted: ``size`` and the label counts leave out the files listed under
    ``unreadable``. Array-backed sources also report their image shape. Hierarchy sizes count
    every node of the hierarchy, out-of-distribution leaves included.
    """
    ds = open_dataset(spec)
    splits: dict[str, Any] = {}
    for name in ds.split_names():
        split = ds.split(name)
        bad = _unreadable(split)
        labels = np.delete(split.labels, [i for i, _, _ in bad])
        entry: dict[str, Any] = {
            "size": len(split) - len(bad),
            "labelled": int((labels >= 0).sum()),
            "class_counts": np.bincount(labels[labels >= 0], minlength=len(ds.class_names)).tolist(),
        }
        if bad:
            entry["unreadable"] = {"count": len(bad), "first": [f"{image_id}: {why}" for _, image_id, why in bad[:5]]}
        if isinstance(split, ArraySplit) and len(split):
            entry["image_shape"] = list(split.images(np.array([0])).shape[1:])
        splits[name] = entry
    hierarchy = None
    if ds.hierarchy is not None:
        levels = ds.hierarchy.levels
        leaves = ds.hierarchy.parents.get(levels[0]) if len(levels) > 1 else None
        counts = {levels[0]: len(leaves) if leaves else len(ds.class_names)}  # may include out-of-distribution leaves
        for child, parent in zip(levels, levels[1:], strict=False):
            counts[parent] = len(set(ds.hierarchy.parents.get(child, {}).values()))
        hierarchy = {"levels": levels, "sizes": counts}
    out: dict[str, Any] = {
        "spec": ds.spec,
        "num_classes": len(ds.class_names),
        "class_names": list(ds.class_names),
        "splits": splits,
        "hierarchy": hierarchy,
        "part_names": list(ds.part_names) if ds.part_names else None,
    }
    ignored = getattr(ds, "ignored", None)
    if ignored:
        out["ignored_files"] = {"count": len(ignored), "first": ignored[:5]}
    return out


def _unreadable(split: Split) -> list[tuple[int, str, str]]:
    """(position, id, reason) of the split's images that cannot be read."""
    if isinstance(split, ArraySplit):
        return []
    checked = track(range(len(split)), f"checking split {split.name}", total=len(split))
    return [(i, split.image_id(i), why) for i in checked if (why := split.unreadable(i)) is not None]
