"""Tiny synth-aircraft-format datasets written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visae.artifact import write_marker


def bars(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An easy 2-class problem that survives flips and shifts: a horizontal (0) or vertical (1) bar."""
    labels_N = rng.integers(0, 2, n)
    images_NHWC = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels_N):
        a, b = rng.integers(2, size - 8, 2)
        if label == 0:
            images_NHWC[i, a : a + 4, 2 : size - 2] = 230
        else:
            images_NHWC[i, 2 : size - 2, b : b + 4] = 230
    return images_NHWC, labels_N


def write_synth(root: Path, splits: dict[str, int], size: int = 16, seed: int = 0, names=("wide", "tall")) -> str:
    """Write a synth-aircraft-format dir of bar images; returns its data spec."""
    rng = np.random.default_rng(seed)
    families = {n: f"fam_{n}" for n in names}
    hierarchy = {"levels": ["variant", "family", "manufacturer"],
                 "parents": {"variant": families, "family": {f: "maker" for f in families.values()}}}  # fmt: skip
    info = {"format_version": 1, "seed": seed, "size": size, "splits": splits, "class_names": list(names),
            "ood_variants": [], "part_names": ["background", "bar"]}  # fmt: skip
    root.mkdir(parents=True)
    for split, n in splits.items():
        images, labels = bars(n, size, rng)
        d = root / split
        d.mkdir()
        np.save(d / "images.npy", images)
        np.save(d / "parts.npy", (images[..., 0] > 200).astype(np.uint8))
        rows = [{"index": i, "id": f"{split}/{i:05d}", "variant": names[l], "family": families[names[l]],
                 "manufacturer": "maker", "label": int(l)} for i, l in enumerate(labels)]  # fmt: skip
        (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "info.json").write_text(json.dumps(info))
    (root / "hierarchy.json").write_text(json.dumps(hierarchy))
    write_marker(root, "synth-aircraft")
    return f"synth-aircraft:{root}"


@pytest.fixture(scope="module")
def bars_spec(tmp_path_factory) -> str:
    return write_synth(tmp_path_factory.mktemp("bars") / "data", {"train": 200, "val": 100})


@pytest.fixture
def synth_writer():
    """``write_synth`` for tests that write their own datasets (a conftest is not importable by name under xdist)."""
    return write_synth
