"""What every evaluation reads: the held-out tokens of whole images, with their labels, parts and factors.

``load_eval_set(store, rows)`` reads the patch tokens (grid cells of a map, patches of a ViT, or the
pooled vector) of some images of a store, in store order, with per image its class label and, where
the dataset has them, per token the ground-truth part of its grid cell and per image its generating
factors (the synthetic aircraft's manifest: engines, tail, planform, ...). ``heldout_rows`` says which
images are held out: all of a held-out store, or the images the run's trainer kept out of training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError
from visae.progress import warn

PATCH_KINDS = (0, 3)
"""Token kinds read: patch tokens / grid cells (0) and pooled vectors (3)."""

FACTOR_KEYS = ("planform", "wing_mount", "tail", "engines", "nose", "window_rows", "winglets")
"""Generating factors of the synthetic aircraft read per image (class-level factors; docs/metrics.md)."""


class Missing(VisaeError):
    """An input a metric family needs is absent (no masks, no hierarchy, one class...): that family is reported
    as skipped with this one-line message, and the other families still run."""


@dataclass
class EvalSet:
    """Held-out tokens of whole images (T tokens over B images)."""

    acts_TD: torch.Tensor
    """Patch tokens (float32), image by image, cells row-major."""
    image_T: np.ndarray
    """Row (0 .. B-1) of each token's image."""
    cell_T: np.ndarray
    """Grid cell of each token (y·W + x); 0 without a grid."""
    label_B: np.ndarray
    """Class label of each image (-1: none)."""
    ids: list[str]
    index_B: np.ndarray
    """Split index of each image."""
    class_names: list[str]
    grid: tuple[int, int] | None
    split: str
    dataset: str
    parts_T: np.ndarray | None = None
    """Ground-truth part of each token's grid cell (0 = background), where the dataset has masks."""
    part_names: list[str] | None = None
    factors_B: dict[str, np.ndarray] | None = None
    """Generating factor -> its value per image (as strings), where the dataset records them."""
    hierarchy: Any = None

    @property
    def n_images(self) -> int:
        return len(self.label_B)

    def per_image_max(self, codes_TS: torch.Tensor) -> torch.Tensor:
        """``codes_BS``: each unit's largest activation over each image's tokens."""
        out_BS = torch.full((self.n_images, codes_TS.shape[1]), float("-inf"), dtype=codes_TS.dtype)
        idx = torch.from_numpy(self.image_T).long()[:, None].expand_as(codes_TS)
        return out_BS.scatter_reduce(0, idx, codes_TS, reduce="amax")

    def per_image_mean(self, codes_TS: torch.Tensor) -> torch.Tensor:
        """``codes_BS``: each unit's mean activation over each image's tokens."""
        out_BS = torch.zeros((self.n_images, codes_TS.shape[1]), dtype=torch.float64)
        out_BS.index_add_(0, torch.from_numpy(self.image_T).long(), codes_TS.double())
        counts_B = np.bincount(self.image_T, minlength=self.n_images).clip(1)
        return (out_BS / torch.from_numpy(counts_B)[:, None]).float()


def heldout_rows(store: Any, run_dir: Path | None, max_images: int | None, seed: int = 0) -> tuple[np.ndarray, str]:
    """(image-table rows, how they were chosen): the trainer's held-out images of ``store`` when it is the
    run's training store, else all images of ``store``; at most ``max_images`` of them (seeded)."""
    rows = np.arange(len(store.images["image"]), dtype=np.int64)
    how = f"all {len(rows)} images of the held-out store {store.path}"
    train = _train_json(run_dir) if run_dir is not None else None
    if train is not None and _same_store(train.get("store"), store.path):
        from visae.store.select import holdout_images

        if train.get("eval_store") or not float(train.get("holdout") or 0):
            raise VisaeError(f"the run kept no images of {store.path} out of training",
                             f"extract a held-out split and pass it: {extract_hint(store)}")  # fmt: skip
        rows = holdout_images(store, float(train["holdout"]), int(train.get("eval_tokens") or 131072), int(train.get("seed") or 0))
        how = f"the {len(rows)} images the trainer kept out of training ({float(train['holdout']):.0%} of {store.path})"
    if max_images is not None and len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
        how += f", {max_images} of them drawn at random"
    return rows, how


def extract_hint(store: Any) -> str:
    """The command that extracts the store's validation split with the same model and layer."""
    m = store.meta
    return (f"visae extract --model {m.backbone} --layer {m.layer} --data {m.dataset} --split val "
            f"--out {Path(store.path).name}-val")  # fmt: skip


def _train_json(run_dir: Path) -> dict[str, Any] | None:
    for p in (run_dir / "train.json", run_dir.parent.parent / "train.json"):
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return None


def _same_store(recorded: Any, path: Path) -> bool:
    try:
        return recorded is not None and Path(recorded).resolve() == Path(path).resolve()
    except OSError:
        return False


def load_eval_set(store: Any, rows: np.ndarray, *, parts: bool = True) -> EvalSet:
    """The patch tokens of the images at ``rows`` of the store's image table, with labels, parts and factors."""
    table = store.images
    rows = np.asarray(rows, dtype=np.int64)
    acts, image_T, cell_T = [], [], []
    grid = _grid(store)
    for b, r in enumerate(rows):
        a, n = int(table["token_start"][r]), int(table["n_tokens"][r])
        idx = store.index_range(a, a + n)
        keep = np.isin(idx["kind"], PATCH_KINDS)
        acts.append(store.storage.to_torch(store.read_range(a, a + n), torch.float32)[torch.from_numpy(keep)])
        image_T.append(np.full(int(keep.sum()), b, dtype=np.int64))
        y, x = idx["y"][keep].astype(np.int64).clip(0), idx["x"][keep].astype(np.int64).clip(0)
        cell_T.append(y * grid[1] + x if grid else np.zeros(int(keep.sum()), np.int64))
    if not acts:
        raise VisaeError(f"no images to evaluate in {store.path}", "pass a store with images (visae store info DIR)")
    es = EvalSet(torch.cat(acts), np.concatenate(image_T), np.concatenate(cell_T), np.asarray(table["label"])[rows].astype(np.int64),
                 [str(table["id"][r]) for r in rows], np.asarray(table["image"])[rows].astype(np.int64), [], grid,
                 str(store.meta.split), str(store.meta.dataset))  # fmt: skip
    _attach_dataset(es, store, parts)
    return es


def _grid(store: Any) -> tuple[int, int] | None:
    layout = store.meta.layout if isinstance(store.meta.layout, dict) else {}
    g = layout.get("grid")
    return (int(g[0]), int(g[1])) if g else None


def _attach_dataset(es: EvalSet, store: Any, parts: bool) -> None:
    """Class names, hierarchy, part maps and factors from the store's dataset (warned and left out if it is gone)."""
    from visae.analysis.parts import cell_parts
    from visae.data.base import open_dataset
    from visae.data.transforms import Preprocess

    try:
        ds = open_dataset(es.dataset)
        split = ds.split(es.split)
    except (VisaeError, OSError) as e:
        warn(f"cannot open the store's dataset '{es.dataset}' ({e}): label names, parts and factors are left out")
        return
    es.class_names, es.hierarchy = list(ds.class_names), getattr(ds, "hierarchy", None)
    rows = getattr(split, "rows", None)
    if rows is not None:
        es.factors_B = {k: np.array([str(rows[i].get(k)) for i in es.index_B]) for k in FACTOR_KEYS if k in rows[0]}
    if parts and ds.part_names and es.grid is not None and hasattr(split, "parts"):
        pre = Preprocess(**store.meta.preprocess)
        maps = split.parts(es.index_B)
        if maps is not None:
            cells_BG = np.stack([cell_parts(m, pre, *es.grid) for m in maps])
            es.parts_T = cells_BG[es.image_T, es.cell_T]
            es.part_names = list(ds.part_names)
