"""What analysis reads: an SAE run, its activation store and the images behind the store.

This is the one module that knows the shapes of ``visae.store.Store``, ``visae.sae`` and the
store's metadata; everything else in ``visae.analysis`` works on the small normalised views
defined here (``Layout``, ``Batch``, ``Images``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.artifact import read_marker
from visae.data.base import CorruptImage, Split
from visae.data.transforms import Preprocess
from visae.errors import VisaeError
from visae.progress import warn

SAE_RUN_KIND = "sae-run"
KIND_PATCH, KIND_CLS, KIND_REGISTER, KIND_POOLED = 0, 1, 2, 3
"""Token kind codes of the store's index (visae.store.format.INDEX_DTYPE)."""


@dataclass(frozen=True)
class Layout:
    """How the tokens of one image sit: a spatial map, a ViT sequence, or one pooled vector."""

    kind: str
    dim: int
    grid_H: int
    grid_W: int
    n_cls: int = 0
    n_registers: int = 0
    gridded: bool = True
    """False for pooled vectors and sequences whose tokens are not image patches."""

    @property
    def has_grid(self) -> bool:
        return self.gridded and self.kind != "pooled"

    @property
    def G(self) -> int:
        return self.grid_H * self.grid_W if self.has_grid else 1

    @property
    def map_grid(self) -> tuple[int, int]:
        """(H, W) of an activation map: the token grid, or 1 x 1 without one."""
        return (self.grid_H, self.grid_W) if self.has_grid else (1, 1)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Layout":
        grid = obj.get("grid") or [1, 1]
        return cls(
            gridded=bool(obj.get("grid")),
            kind=str(obj["kind"]),
            dim=int(obj["dim"]),
            grid_H=int(grid[0]),
            grid_W=int(grid[1]),
            n_cls=int(obj.get("n_cls") or 0),
            n_registers=int(obj.get("n_registers") or 0),
        )


@dataclass
class Batch:
    """The tokens of whole images: activations and, per token, image / kind / grid cell."""

    acts_TD: torch.Tensor
    image_T: torch.Tensor
    """Image (split index) of each token."""
    kind_T: torch.Tensor
    y_T: torch.Tensor
    x_T: torch.Tensor


@dataclass
class RunInfo:
    path: Path
    """Where the feature DB goes: the run directory, or the SAE folder that was named."""
    sae_dir: Path
    """The SAELens folder (cfg.json + sae_weights.safetensors) of the analysed SAE."""
    backbone: str
    layer: str
    store: Path | None
    cfg: dict[str, Any]
    metrics: dict[str, Any]
    """The last training-batch record of metrics.jsonl (training-time codes)."""
    heldout: dict[str, Any] | None = None
    """Held-out metrics of the saved SAE (cfg.json ``visae.heldout_eval``), None for runs without them."""
    tokens: Any = None
    """Token kinds the run trained on: a kind name, None (the trainer's default) or NOT_RECORDED."""
    normalization: dict[str, Any] | None = None
    """How the SAE's inputs were normalised in training (cfg.json), None when not recorded."""


def read_run(run: str | Path) -> RunInfo:
    """The SAE to analyse and its record: backbone, layer, store it was trained on, last metrics.

    ``run`` is a training run with one SAE, or one SAE folder (RUN/saes/NAME, or any
    SAELens folder) when a run trained several.
    """
    from visae.sae.importers import run_sae_dirs

    path = Path(run)
    if not path.is_dir():
        raise VisaeError(f"--run {path}: no such directory", "pass the directory `visae train` wrote")
    marker = read_marker(path)
    if marker is not None and marker.get("kind") == SAE_RUN_KIND:
        saes = run_sae_dirs(path)
        if not saes:
            raise VisaeError(f"run {path} has not finished training yet (no SAE saved)", "resume it with visae train --resume")
        if len(saes) > 1:
            raise VisaeError(f"run {path} holds several SAEs ({', '.join(saes)})",
                             f"analyse one at a time: --run {path / 'saes' / next(iter(saes))}")
        sae_dir = next(iter(saes.values()))
    elif (path / "cfg.json").is_file():
        sae_dir = path
    elif marker is not None:
        raise VisaeError(f"--run {path} is a visae {marker.get('kind')}, not a sae-run",
                         "pass the directory `visae train` wrote (a store goes to --store)")
    else:
        raise VisaeError(f"--run {path} is not an SAE run (no visae.json, no cfg.json)", "pass the directory `visae train` wrote")
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    meta = cfg.get("visae") or {}
    saelens = cfg.get("metadata") or cfg.get("meta") or {}  # SAELens 6 keeps the names in "metadata"
    store = meta.get("store")
    run_dir = sae_dir.parent.parent if sae_dir.parent.name == "saes" else sae_dir
    return RunInfo(
        path=path, sae_dir=sae_dir,
        backbone=str(meta.get("backbone") or saelens.get("model_name") or ""),
        layer=str(meta.get("layer") or saelens.get("hook_name") or ""),
        store=Path(store) if store else None,
        cfg={k: v for k, v in cfg.items() if k != "visae"} | {"arch": meta.get("arch"), "spec": meta.get("spec")},
        metrics=_last_metrics(run_dir / "metrics.jsonl", meta.get("run_sae")) | dict(meta.get("metrics") or {}),
        heldout=meta.get("heldout_eval") if isinstance(meta.get("heldout_eval"), dict) else None,
        tokens=_trained_kinds(run_dir / "train.json"),
        normalization=meta.get("normalization") if isinstance(meta.get("normalization"), dict) else None,
    )


def _trained_kinds(path: Path) -> Any:
    """train.json's token kinds; NOT_RECORDED for runs (or folders) that predate them."""
    try:
        train = json.loads(path.read_text())
    except (OSError, ValueError):
        return NOT_RECORDED
    if not isinstance(train, dict) or "training_tokens" not in train:  # "tokens" was then a token count
        return NOT_RECORDED
    kinds = train.get("tokens")
    return kinds if kinds in (None, "patch", "cls", "registers", "all") else NOT_RECORDED


def _last_metrics(path: Path, sae: str | None) -> dict[str, Any]:
    """The last training-batch record of this SAE in metrics.jsonl (the end of training)."""
    if not path.is_file():
        return {}
    last: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("sae", sae) == sae and rec.get("split", "train") == "train":
            last = {k: v for k, v in rec.items() if isinstance(v, (int, float, str))}
    return last


def open_sae(sae_dir: Path) -> torch.nn.Module:
    from visae.sae.importers import load_sae

    sae = load_sae(sae_dir)
    sae.eval()
    return sae


def open_store(path: Path) -> Any:
    from visae.store.reader import Store

    return Store(path).check()  # the scan reads every shard: refuse a damaged one before any work


def check_compatible(run: RunInfo, store: Any, sae: torch.nn.Module) -> None:
    """Refuse a store that is not the one the SAE reads: other backbone, layer or width."""
    backbone, layer = str(store.meta.backbone), str(store.meta.layer)
    hint = "pass the --store the SAE was trained on (its cfg.json names it)"
    if run.backbone and run.backbone != backbone:
        raise VisaeError(f"the SAE run reads backbone '{run.backbone}' but the store {store.path} holds '{backbone}'", hint)
    if run.layer and run.layer != layer:
        raise VisaeError(f"the SAE run reads layer '{run.layer}' but the store {store.path} holds layer '{layer}'", hint)
    d_sae = int(sae_decoder(sae).shape[1])
    if int(store.d) != d_sae:
        raise VisaeError(f"the SAE takes {d_sae}-d activations but the store {store.path} holds {store.d}-d tokens", hint)


def sae_decoder(sae: torch.nn.Module) -> torch.Tensor:
    """The decoder as (S, D)."""
    return sae.W_dec.detach()


@torch.no_grad()
def encode(sae: torch.nn.Module, acts_TD: torch.Tensor) -> torch.Tensor:
    """Dense codes (T, S) of raw activations, whatever form the SAE returns them in."""
    codes = sae.encode(acts_TD)
    if hasattr(codes, "dense"):  # visae.sae.contract.Codes
        return codes.dense().float()
    if isinstance(codes, torch.Tensor):
        return codes.to_dense().float() if codes.is_sparse else codes.float()
    idx, val = (codes.indices, codes.values) if hasattr(codes, "indices") else codes
    S = int(sae_decoder(sae).shape[0])
    return torch.zeros(acts_TD.shape[0], S).scatter_(1, idx.long(), val.float())


def layout_of(store: Any, kinds: frozenset[int] | None = None) -> Layout:
    """The store's layout, reduced to the tokens it kept and, given ``kinds``, to the analysed
    kinds (a CLS-only store, or an analysis of CLS tokens only, has no grid)."""
    lay = Layout.from_json(store.meta.layout)
    kept = str(getattr(store.meta, "tokens", "all"))
    gridded = lay.gridded and kept in ("patch", "all") and (kinds is None or KIND_PATCH in kinds)
    cls = kept in ("cls", "all") and (kinds is None or KIND_CLS in kinds)
    return replace(lay, gridded=gridded, n_cls=lay.n_cls if cls else 0)


NOT_RECORDED = object()
"""``RunInfo.tokens`` of a run whose train.json names no token kinds."""


def analysed_kinds(store: Any, tokens: str | None, trained_on: str | None | object) -> frozenset[int] | None:
    """Kind codes to analyse (None: every kind the store holds).

    ``tokens`` (``--tokens``) wins; else the kinds the run trained on: ``trained_on`` is the
    run's train.json "tokens" (a kind name; None: the trainer's default selection; ``NOT_RECORDED``
    for runs that predate token kinds, which trained on every token of the store).
    """
    from visae.store.select import token_kinds

    if tokens is None and trained_on is NOT_RECORDED:
        return None
    return token_kinds(store, tokens if tokens is not None else trained_on)  # type: ignore[arg-type]



def iter_batches(store: Any, batch_images: int, kinds: frozenset[int] | None = None,
                 images: tuple[int, int] | None = None) -> Iterator[tuple[Batch, int]]:  # fmt: skip
    """Whole images at a time, with per-token image (split index) / kind / y / x, only the
    tokens of ``kinds`` (None: all); each batch with the number of store images it covered.
    ``images``: only the store's images [a, b) in store order (a rank's share); None: all."""
    items = store.iter_images(batch_images) if images is None else _iter_share(store, batch_images, *images)
    for item in items:
        kind_T = np.asarray(item.kind_T)
        keep_T = slice(None) if kinds is None else np.isin(kind_T, list(kinds))
        tokens_TD = item.tokens_TD if kinds is None else item.tokens_TD[torch.from_numpy(keep_T)]
        batch = Batch(
            acts_TD=torch.as_tensor(tokens_TD, dtype=torch.float32),
            image_T=torch.from_numpy(np.array(np.asarray(item.image_T)[keep_T], dtype=np.int64)),
            kind_T=torch.from_numpy(np.array(kind_T[keep_T], dtype=np.int64)),
            y_T=torch.from_numpy(np.array(np.asarray(item.y_T)[keep_T], dtype=np.int64)),
            x_T=torch.from_numpy(np.array(np.asarray(item.x_T)[keep_T], dtype=np.int64)),
        )
        yield batch, len(item.images)


def complete_images(store: Any) -> int:
    """How many of the store's images (in store order) have all their tokens in it."""
    t = store.images
    return int(((t["token_start"] + t["n_tokens"]) <= len(store)).sum())


def _iter_share(store: Any, batch_images: int, a: int, b: int) -> Iterator[Any]:
    """``Store.iter_images`` over the store's images [a, b) only (whole images, store order)."""
    from visae.store.reader import ImageTokens

    table = store.images
    end_T = table["token_start"] + table["n_tokens"]
    b = min(b, complete_images(store))
    for i in range(a, b, batch_images):
        j = min(i + batch_images, b)
        lo, hi = int(table["token_start"][i]), int(end_T[j - 1])
        tokens_TD = store.storage.to_torch(store.read_range(lo, hi), torch.float32)
        yield ImageTokens(tokens_TD, store.index_range(lo, hi), table["image"][i:j], table["id"][i:j])


@dataclass
class ImageTable:
    """The store's images: split index, id and label of each, in store order."""

    image: np.ndarray
    image_id: list[str]
    label: np.ndarray

    @classmethod
    def of(cls, store: Any) -> "ImageTable":
        t = store.images
        return cls(np.asarray(t["image"], dtype=np.int64), [str(i) for i in t["id"]], np.asarray(t["label"], dtype=np.int64))

    def labels_by_image(self) -> np.ndarray:
        """Label of each split index (-1 where the store has no such image)."""
        out = np.full(int(self.image.max(initial=-1)) + 1, -1, dtype=np.int64)
        out[self.image] = self.label
        return out

    def ids_by_image(self) -> dict[int, str]:
        return dict(zip(self.image.tolist(), self.image_id))


class Images:
    """The dataset images behind a store, decoded on demand (heatmaps, part maps).

    A dataset that cannot be opened any more (a moved folder) is reported once; its images
    then read as None and render as grey placeholders.
    """

    def __init__(self, dataset: str, split: str, preprocess: dict[str, Any]):
        self.spec, self.split_name = dataset, split
        self.preprocess = Preprocess(**preprocess)
        self.class_names: list[str] = []
        self.part_names: list[str] | None = None
        self.split: Split | None = None
        try:
            from visae.data.base import open_dataset

            ds = open_dataset(dataset)
            self.split = ds.split(split)
            self.class_names = list(ds.class_names)
            self.part_names = list(ds.part_names) if ds.part_names else None
        except (VisaeError, OSError, ImportError) as e:
            warn(f"cannot open the store's dataset '{dataset}' ({e}); images render as grey placeholders")

    @classmethod
    def of_store(cls, store: Any) -> "Images":
        m = store.meta
        return cls(m.dataset, m.split, dict(m.preprocess))

    def sample(self, image: int):
        """The dataset sample at split index ``image``, or None when it cannot be read."""
        if self.split is None:
            return None
        try:
            return self.split[int(image)]
        except (CorruptImage, OSError, IndexError):
            return None

    def view(self, image: int) -> np.ndarray | None:
        """The image as the model saw it (resized, centre-cropped), (size, size, 3) uint8."""
        s = self.sample(image)
        return None if s is None else self.model_view(s.image_HWC)

    def model_view(self, image_HWC: np.ndarray) -> np.ndarray:
        """The pixels ``Preprocess`` feeds the model, before it scales and normalises them."""
        return model_view(self.preprocess, image_HWC)


def model_view(pre: Preprocess, image_HWC: np.ndarray) -> np.ndarray:
    """An image as ``pre`` shows it to the model, before scaling and normalising: resized with its resampling
    filter and centre-cropped by ``Preprocess.geometry``, (size, size, 3) uint8."""
    from PIL import Image

    h, w = image_HWC.shape[:2]
    rh, rw, top, left = pre.geometry(h, w)
    if (rh, rw) != (h, w):
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[pre.resample]
        image_HWC = np.asarray(Image.fromarray(np.asarray(image_HWC, dtype=np.uint8)).resize((rw, rh), resample))
    return np.ascontiguousarray(image_HWC[top : top + pre.size, left : left + pre.size], dtype=np.uint8)
