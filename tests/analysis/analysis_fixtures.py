"""Tiny planted fixtures for the analysis tests: a part-annotated image source, a real
activation store (written with StoreWriter) whose channels fire on known parts and classes,
and an SAE run whose latents are those channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from visae.artifact import write_marker
from visae.data.base import SOURCES, ArraySplit, Dataset, Split
from visae.store import StoreMeta, StoreWriter
from visae.store.format import INDEX_DTYPE

SCHEME = "analysis-test"
SIZE, GRID, D = 32, 4, 6
PART_NAMES = ["background", "wing", "tail"]
CLASS_NAMES = ["jet", "prop"]


class _Split(ArraySplit):
    def __init__(self, name: str, images: np.ndarray, parts: np.ndarray, labels: np.ndarray):
        self.name, self._images, self._parts, self._labels = name, images, parts, labels

    def __len__(self) -> int:
        return len(self._labels)

    def images(self, indices_B):
        return self._images[np.asarray(indices_B)]

    def parts(self, indices_B):
        return self._parts[np.asarray(indices_B)]

    def image_id(self, i: int) -> str:
        return f"img{i:03d}"

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()


class _Dataset(Dataset):
    def __init__(self, path: str):
        data = np.load(path)
        self.spec = f"{SCHEME}:{path}"
        self.class_names = list(CLASS_NAMES)
        self.part_names = list(PART_NAMES)
        self._split = _Split("train", data["images"], data["parts"], data["labels"])

    def split_names(self) -> list[str]:
        return ["train"]

    def _open_split(self, name: str) -> Split:
        return self._split


if SCHEME not in SOURCES:
    SOURCES.register(SCHEME)(_Dataset)


def part_map() -> np.ndarray:
    """Top half = wing (1), bottom-left quarter = tail (2), the rest background."""
    parts = np.zeros((SIZE, SIZE), np.uint8)
    parts[: SIZE // 2] = 1
    parts[SIZE // 2 :, : SIZE // 2] = 2
    return parts


def cell_parts_truth() -> np.ndarray:
    cells = np.zeros((GRID, GRID), np.int64)
    cells[: GRID // 2] = 1
    cells[GRID // 2 :, : GRID // 2] = 2
    return cells.ravel()


def planted_tokens(n_images: int, labels: np.ndarray, seed: int = 0, n_cls: int = 0) -> np.ndarray:
    """(n_images, n_cls + G, D) activations.

    ch0: on wing cells of class-0 images (strength grows with the image index);
    ch1: on tail cells of every image;  ch2: everywhere, weakly (dense);  ch3: never;
    ch4, ch5: small noise. A CLS token carries ch0 for class-1 images.
    """
    rng = np.random.default_rng(seed)
    cells = cell_parts_truth()
    G = GRID * GRID
    x = np.zeros((n_images, n_cls + G, D), np.float32)
    x[..., 4:] = rng.normal(0, 0.01, size=(n_images, n_cls + G, D - 4))
    for i in range(n_images):
        patch = x[i, n_cls:]
        if labels[i] == 0:
            patch[cells == 1, 0] += 1.0 + i / n_images
        patch[cells == 2, 1] += 2.0
        patch[:, 2] += 0.3
        patch[:, 3] = -1.0
        if n_cls and labels[i] == 1:
            x[i, 0, 0] = 5.0 + i
    return x


def make_dataset(tmp: Path, n_images: int) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(n_images, SIZE, SIZE, 3), dtype=np.uint8)
    labels = (np.arange(n_images) % 2).astype(np.int64)
    path = tmp / "data.npz"
    np.savez(path, images=images, parts=np.repeat(part_map()[None], n_images, 0), labels=labels)
    return f"{SCHEME}:{path}", labels


def make_store(path: Path, dataset: str, labels: np.ndarray, *, layer: str = "blocks.3", n_cls: int = 0,
               backbone: str = "hf:test/tiny", shard_tokens: int = 50, tokens_: np.ndarray | None = None,
               split: str = "train", pooled: bool = False) -> Path:
    n = len(labels)
    acts = planted_tokens(n, labels, n_cls=n_cls) if tokens_ is None else tokens_
    kind = "pooled" if pooled else "sequence" if n_cls else "spatial"
    layout = {"kind": kind, "dim": D, "grid": None if pooled else [GRID, GRID], "n_cls": n_cls, "n_registers": 0,
              "channels_last": False}
    if pooled:
        acts = acts.max(axis=1, keepdims=True)
    meta = StoreMeta(
        backbone=backbone, layer=layer, layout=layout, tokens="all" if n_cls else "patch",
        preprocess={"size": SIZE, "crop_pct": 1.0}, dataset=dataset, split=split, dtype="fp32", d=D,
        shard_tokens=shard_tokens, planned_images=n, checksum="sha256", config={},
    )
    path.mkdir(parents=True, exist_ok=True)
    w = StoreWriter.create(path, meta)
    G = 1 if pooled else GRID * GRID
    for i in range(n):
        rows = np.zeros(n_cls + G, dtype=INDEX_DTYPE)
        rows["image"], rows["label"] = i, labels[i]
        rows["kind"][:n_cls] = 1
        rows["y"][:n_cls] = rows["x"][:n_cls] = -1
        if pooled:
            rows["kind"], rows["y"], rows["x"] = 3, -1, -1
        else:
            rows["y"][n_cls:], rows["x"][n_cls:] = np.divmod(np.arange(G), GRID)
        w.add(torch.from_numpy(acts[i]), rows, {i: f"img{i:03d}"})
    w.close()
    return path


def make_run(path: Path, store: Path, *, backbone: str = "hf:test/tiny", layer: str = "blocks.3",
             arch: str = "relu") -> Path:
    """A finished training run holding one real SAE whose latents are the store's channels."""
    from visae.sae import SAESpec, create_sae
    from visae.sae.saelens import save_saelens

    sae = create_sae(SAESpec(arch=arch, d_in=D, d_sae=D, k=3 if arch == "topk" else None))
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.eye(D) if p.shape == (D, D) else torch.zeros_like(p))
    sae.meta = {"backbone": backbone, "layer": layer, "store": str(store), "run_sae": arch}
    path.mkdir(parents=True, exist_ok=True)
    save_saelens(sae, path / "saes" / arch)
    (path / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "sae": arch, "nmse": 0.5, "l0": 9.0}) + "\n"
        + json.dumps({"step": 2, "sae": arch, "nmse": 0.05, "l0": 2.5}) + "\n")
    write_marker(path, "sae-run", saes=[arch], complete=True)
    return path


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """(run dir, store dir, labels) of a spatial store with a planted identity SAE."""
    dataset, labels = make_dataset(tmp_path, 12)
    store = make_store(tmp_path / "store", dataset, labels)
    run = make_run(tmp_path / "run", store)
    monkeypatch.setenv("VISAE_QUIET", "1")
    return run, store, labels
