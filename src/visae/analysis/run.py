"""``analyze(cfg)``: one streaming pass over the store an SAE was trained on, into RUN/features.sqlite."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from visae.analysis import parts as P
from visae.analysis.db import DB_NAME, DBWriter, FeatureDB
from visae.analysis.inputs import (
    ImageTable, Images, Layout, RunInfo, check_compatible, layout_of, open_sae, open_store, read_run, sae_decoder,
)
from visae.analysis.overlays import HEATMAP_DIR
from visae.analysis.labels import Labels, class_part_labels, clip_labels, vocabulary
from visae.analysis.record import fill, latent_rows
from visae.analysis.scan import PART_TOP, ScanResult, scan
from visae.analysis.stats import HIST_EDGES, class_selectivity
from visae.config import Config
from visae.errors import VisaeError
from visae.progress import info

DENSE_FREQ = 0.1
"""A latent firing on more than this share of tokens counts as dense."""
BATCH_CODES = 1 << 24
"""Auto batch size: about this many dense code values (64 MiB of float32) per batch."""


class AnalyzeConfig(Config):
    """Feature analysis of a trained SAE over its activation store."""

    run: Path
    """The SAE run directory (from `visae train`); the feature DB is written into it."""
    store: Path | None = None
    """Activation store to analyse; default: the store the run was trained on."""
    top: int = Field(32, ge=1, le=1024)
    """Top images kept per latent and ranking (with their activation maps)."""
    batch_images: int = Field(0, ge=0)
    """Images encoded per batch; 0 picks one that keeps a batch's dense codes near 64 MiB."""
    force: bool = False
    """Replace an existing feature DB (and its heatmap cache)."""
    vocab: Path | None = None
    """Text file of phrases (one a line) for CLIP text-tower labels, added to the built-in list."""
    text_labels: bool = True
    """Try CLIP/SigLIP text-tower labels where the backbone and layer allow it."""


def analyze(cfg: AnalyzeConfig) -> Path:
    """Scan the store once, compute per-latent statistics, top examples, part purity and labels;
    write RUN/features.sqlite and return its path. ``summary(run)`` reads the headline numbers back."""
    run = read_run(cfg.run)
    db_path = run.path / DB_NAME
    if db_path.exists() and not cfg.force:
        raise VisaeError(f"{db_path} already exists", "pass --force to analyse again")
    store_path = cfg.store or run.store
    if store_path is None:
        raise VisaeError(f"--run {run.path} does not name its store", "pass --store")
    store = open_store(Path(store_path))
    sae = open_sae(run.sae_dir)
    check_compatible(run, store, sae)
    layout, table = layout_of(store), ImageTable.of(store)
    images = Images.of_store(store)
    class_names = images.class_names or [str(c) for c in range(int(table.label.max(initial=-1)) + 1)]
    labels_by_image = table.labels_by_image()
    S = int(sae_decoder(sae).shape[0])
    tokens_per_image = max(int(np.max(store.images["n_tokens"], initial=1)), 1)
    batch = cfg.batch_images or int(np.clip(BATCH_CODES // (tokens_per_image * S), 1, 256))
    mean_D = store.mean_D.float() if layout.has_grid else None
    with torch.no_grad():
        res = scan(store, sae, layout, labels_by_image, len(class_names), cfg.top, batch, mean_D)
    purity = part_purity(res, images, layout)
    clip = text_labels(cfg, run, store.meta, layout, sae, class_names, images.part_names)
    sae_part = (purity["sae_part"], purity["sae_share"]) if purity else None
    top_S, share_S, _ = class_selectivity(res.stats.class_mass_SL)
    labels = class_part_labels(top_S, share_S, class_names, *(sae_part or (None, None)), images.part_names)
    if isinstance(clip, tuple):
        labels = Labels(list(clip[0]), clip[1].astype(float), ["clip"] * S)
    writer = DBWriter()
    writer.meta |= _meta(run, store, layout, res, cfg, class_names, purity, clip)
    fill(writer, res, grid=(layout.grid_H, layout.grid_W), ids=table.ids_by_image(), labels_by_image=labels_by_image,
         latent_rows_=latent_rows(res, sae_part, labels, clip if isinstance(clip, tuple) else None),
         class_names=class_names, part_names=images.part_names,
         sae_parts=purity["sae_SK"] if purity else None, raw_parts=purity["raw_SK"] if purity else None,
         raw_purity=(purity["raw_part"], purity["raw_share"]) if purity else None)
    writer.write(db_path)
    shutil.rmtree(run.path / HEATMAP_DIR, ignore_errors=True)
    info(f"feature DB: {db_path}")
    return db_path


def part_purity(res: ScanResult, images: Images, layout: Layout) -> dict[str, Any] | None:
    """Part of every top patch of every latent and raw channel, and each one's dominant part."""
    if not images.part_names or not layout.has_grid or res.sae_patches is None:
        return None
    cache: dict[int, np.ndarray | None] = {}

    def cells(image: int) -> np.ndarray | None:
        if image not in cache:
            s = images.sample(image)
            cache[image] = None if s is None or s.parts_HW is None else P.cell_parts(
                s.parts_HW, images.preprocess, layout.grid_H, layout.grid_W)
        return cache[image]

    out: dict[str, Any] = {}
    for name, r in (("sae", res.sae_patches), ("raw", res.raw_patches)):
        if r is None:
            continue
        part_SK = P.top_patch_parts(r.image_SK, r.cell_SK, r.score_SK > 0, cells)
        out[f"{name}_SK"] = part_SK
        out[f"{name}_part"], out[f"{name}_share"] = P.dominant_part(part_SK)
    out.setdefault("raw_SK", None)
    return out


def text_labels(cfg: AnalyzeConfig, run: RunInfo, store_meta: Any, layout: Layout, sae: torch.nn.Module,
                class_names: list[str], part_names: list[str] | None) -> tuple[list[str], np.ndarray] | str:
    """CLIP text-tower labels, or the reason there are none."""
    if not cfg.text_labels:
        return "text labels turned off"
    if getattr(store_meta, "random_init", False):
        return "the backbone has random weights, so text-tower labels would mean nothing"
    extra: list[str] = []
    if cfg.vocab is not None:
        if not cfg.vocab.is_file():
            raise VisaeError(f"--vocab {cfg.vocab}: no such file", "give a text file with one phrase per line")
        extra = [line.strip() for line in cfg.vocab.read_text().splitlines() if line.strip()]
    kind = layout.kind if layout.gridded or layout.kind == "pooled" else "sequence"
    return clip_labels(run.backbone, run.layer, kind, sae_decoder(sae), vocabulary(class_names, part_names, extra))


def _meta(run: RunInfo, store: Any, layout: Layout, res: ScanResult, cfg: AnalyzeConfig,
          class_names: list[str], purity: dict[str, Any] | None, clip: Any) -> dict[str, Any]:
    st = res.stats
    freq = st.freq_S
    summary = {
        "n_latents": int(len(freq)), "n_images": res.n_images, "n_tokens": st.n_tokens, "d": int(store.d),
        "mean_l0": float(freq.sum()) if st.n_tokens else 0.0,
        "dead_pct": float(100 * (freq == 0).mean()), "dense_pct": float(100 * (freq > DENSE_FREQ).mean()),
        "part_pure_sae": P.count_pure(purity["sae_part"], purity["sae_share"]) if purity else None,
        "part_pure_raw": P.count_pure(purity["raw_part"], purity["raw_share"]) if purity and "raw_part" in purity else None,
        "n_channels": int(store.d),
        "text_labels": "clip" if isinstance(clip, tuple) else clip,
    }
    return {
        "summary": summary,
        "run": str(run.path.resolve()), "store": str(Path(store.path).resolve()),
        "backbone": str(store.meta.backbone), "layer": str(store.meta.layer),
        "layout": dict(store.meta.layout), "tokens": str(getattr(store.meta, "tokens", "")),
        "grid": [layout.grid_H, layout.grid_W], "has_grid": layout.has_grid,
        "dataset": str(store.meta.dataset), "split": str(store.meta.split), "preprocess": dict(store.meta.preprocess),
        "sae": run.cfg, "metrics": run.metrics,
        "n_latents": summary["n_latents"], "top": cfg.top, "rankings": list(res.rankings),
        "hist_edges": HIST_EDGES.tolist(), "dense_freq": DENSE_FREQ,
        "part_top": PART_TOP, "pure_share": P.PURE_SHARE, "n_classes": len(class_names),
    }


def summary(run_or_db: str | Path) -> dict[str, Any]:
    """The headline numbers of an analysed run (meta 'summary' of its feature DB)."""
    with FeatureDB(run_or_db) as db:
        return dict(db.meta["summary"])
