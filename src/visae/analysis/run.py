"""``analyze(cfg)``: one streaming pass over the store an SAE was trained on, into RUN/features.sqlite."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.analysis.baselines import headline, random_sae, run_normalisation
from visae.analysis.db import DB_NAME, DBWriter, FeatureDB
from visae.analysis.inputs import (
    NOT_RECORDED, ImageTable, Images, Layout, RunInfo, analysed_kinds, check_compatible, layout_of, open_sae,
    open_store, read_run, sae_decoder,
)
from visae.analysis.dedup import MATCH, Neighbours, near_duplicates
from visae.analysis.distinct import candidate_lists, dedup_summary, distinct
from visae.analysis.labels import (
    CLIP_QUANTILE, Labels, class_evidence, clip_evidence, clip_labels, decide_labels, part_evidence, vocabulary,
)
from visae.analysis.measures import BORDER_RATIO, UnitScores, score_scan, summarise
from visae.analysis.overlays import HEATMAP_DIR, lock_dir
from visae.analysis.config import AnalyzeConfig
from visae.analysis.parts import PURE_SHARE
from visae.analysis.record import fill, latent_rows
from visae.analysis.scan import ScanResult, scan
from visae.analysis.stats import HIST_EDGES, SELECTIVE_INDEX
from visae.analysis.units import PART_TOP
from visae.artifact import remove_leftovers
from visae.config import Config
from visae.distributed import World
from visae.errors import VisaeError
from visae.lock import locked
from visae.progress import info

DENSE_FREQ = 0.1
"""A latent firing on more than this share of tokens counts as dense."""
BATCH_CODES = 1 << 24
"""Auto batch size: about this many dense code values (64 MiB of float32) per batch."""


def analyze(cfg: AnalyzeConfig) -> Path:
    """Scan the store once, compute per-latent statistics, top examples, class selectivity, part
    purity (with the raw-channel and random-init baselines) and labels; write RUN/features.sqlite
    and return its path. ``summary(run)`` reads the headline numbers back. The run is locked while
    the DB and its heatmap cache are replaced."""
    run = read_run(cfg.run)
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):
        return _analyze_ranks(cfg, run)
    with locked(lock_dir(run.path)) as owned:
        remove_leftovers(owned)
        return _analyze(cfg, run)


def _analyze_ranks(cfg: AnalyzeConfig, run: RunInfo) -> Path:
    """Under torchrun: every rank scans its share of the store, rank 0 merges, locks and writes
    (visae.analysis.ranks); every rank returns the DB's path."""
    from visae.analysis.ranks import quiet_unless_main, together
    from visae.device import resolve_device
    from visae.distributed import world

    device = resolve_device(cfg.device)
    w = world(device)
    quiet_unless_main(w)
    if device.type == "cuda":  # one GPU per rank
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
        cfg = cfg.model_copy(update={"device": str(device)})
    with ExitStack() as held:

        def lock() -> None:
            if w.main:
                remove_leftovers(held.enter_context(locked(lock_dir(run.path))))

        together(w, "analyze: lock the run", lock)
        return _analyze(cfg, run, w)


def _analyze(cfg: AnalyzeConfig, run: RunInfo, w: World | None = None) -> Path:
    from visae.analysis.ranks import scan_ranks, together
    from visae.device import resolve_device

    w = w or World(0, 1, 0, None)
    db_path = run.path / DB_NAME

    if db_path.exists() and not cfg.force and _analysed_same(cfg, db_path):
        info(f"{db_path}: already analysed (same settings); pass --force to redo it")
        return db_path

    def prepare() -> tuple[Any, ...]:
        store_path = cfg.store or run.store
        if store_path is None:
            raise VisaeError(f"--run {run.path} does not name its store", "pass --store")
        device = resolve_device(cfg.device)
        store = open_store(Path(store_path))
        sae = open_sae(run.sae_dir)
        check_compatible(run, store, sae)
        kinds = analysed_kinds(store, cfg.tokens, run.tokens)
        return device, store, sae, kinds, layout_of(store, kinds), ImageTable.of(store), Images.of_store(store)

    device, store, sae, kinds, layout, table, images = together(w, "analyze: open the run and its store", prepare)
    class_names = images.class_names or [str(c) for c in range(int(table.label.max(initial=-1)) + 1)]
    labels_by_image = table.labels_by_image()
    S = int(sae_decoder(sae).shape[0])
    tokens_per_image = max(int(np.max(store.images["n_tokens"], initial=1)), 1)
    batch = cfg.batch_images or int(np.clip(BATCH_CODES // (tokens_per_image * S), 1, 256))
    raw_mean_D = kind_stats(store, kinds)[0]
    rand = together(w, "analyze: build the random-init baseline", lambda: baseline_sae(cfg, run, store, sae, kinds))
    why_not = {"random": rand} if isinstance(rand, str) else {}
    spare = cfg.spare if cfg.dedup else 0
    with torch.no_grad():
        args = (store, sae.to(device), layout, labels_by_image, len(class_names), cfg.top, batch)
        kw: dict[str, Any] = dict(kinds=kinds, raw_mean_D=raw_mean_D, device=device, per_image=cfg.per_image,
                                  spare=spare, random_sae=None if isinstance(rand, str) else rand.to(device))  # fmt: skip
        merged = scan_ranks(w, *args, **kw) if w.distributed else scan(*args, **kw)
    sae.cpu()
    if merged is None:  # not rank 0: rank 0 writes the DB
        return db_path
    res = merged
    near = find_near_duplicates(cfg, res, images)
    res = distinct(res, None if isinstance(near, str) else near, cfg.top, cfg.per_image)
    scores = score_scan(res, images, layout, cfg.min_images)
    clip = text_labels(cfg, run, store.meta, layout, sae, class_names, images.part_names)
    labels = _labels(scores["sae"], res, class_names, images.part_names, clip, cfg.min_images)
    writer = DBWriter()
    n_parts = len(images.part_names or [])
    measures = summarise(scores, n_parts, cfg.min_images, why_not)
    for key, text in definitions(cfg).items():
        if measures.get(key) is not None:
            measures[key]["definition"] = text
    dedup = dedup_summary(res, None if isinstance(near, str) else near, cfg.top + spare,
                          near if isinstance(near, str) else None)  # fmt: skip
    writer.meta |= _meta(run, store, layout, res, cfg, class_names, kinds, clip) | {"dedup": dedup} | {
        "summary": _summary(store, res, clip) | measures | {"labels": label_counts(labels)}}
    rows = latent_rows(res, scores["sae"], labels, clip if isinstance(clip, tuple) else None)
    fill(writer, res, scores, grid=layout.map_grid, ids=table.ids_by_image(), labels_by_image=labels_by_image,
         latent_rows_=rows, class_names=class_names, part_names=images.part_names)  # fmt: skip
    writer.write(db_path)
    shutil.rmtree(run.path / HEATMAP_DIR, ignore_errors=True)  # keyed by the old DB's id: never served again
    info(f"feature DB: {db_path}")
    return db_path


def kind_stats(store: Any, kinds: frozenset[int] | None) -> tuple[torch.Tensor, float]:
    """(mean, scale) of the store's tokens of ``kinds`` (None: all), as the trainer computes them."""
    from visae.store.view import StoreView
    from visae.store.select import Selection

    view = StoreView(store, Selection(kinds))
    return view.mean_D.float(), float(view.scale)


def baseline_sae(cfg: AnalyzeConfig, run: RunInfo, store: Any, sae: torch.nn.Module,
                 kinds: frozenset[int] | None) -> torch.nn.Module | str:  # fmt: skip
    """The random-init SAE of ``sae``'s shape, normalised as the run trained (or why there is none)."""
    if not cfg.random_baseline:
        return "turned off"
    trained = kinds
    if run.tokens is not NOT_RECORDED:
        try:
            trained = analysed_kinds(store, None, run.tokens)
        except VisaeError:  # another store than the run's: its analysed kinds stand in
            trained = kinds
    mean_D, scale = run_normalisation(run.normalization, *kind_stats(store, trained))
    return random_sae(sae, mean_D, scale, cfg.seed)


def definitions(cfg: AnalyzeConfig) -> dict[str, str]:
    """One-line definitions of the measures, with this analysis's thresholds (docs/metrics.md)."""
    return {
        "part_pure": f"top-{PART_TOP} patches (at most {cfg.per_image} per image, near-duplicates counted as one "
                     f"image) >= {PURE_SHARE:.0%} on one part, from >= {cfg.min_images} distinct images",
        "class_selective": f"class selectivity index >= {SELECTIVE_INDEX} (class-mean activations), "
                           f"fired on >= {cfg.min_images} images",
        "border": f"mean activation per edge cell of the grid >= {BORDER_RATIO:g}x the mean per interior cell, "
                  f"over all analysed images, fired on >= {cfg.min_images} images",
    }


def find_near_duplicates(cfg: AnalyzeConfig, res: ScanResult, images: Images) -> Neighbours | str:
    """Near-duplicates among the images of the scan's candidate lists, or why they were not looked for."""
    if not cfg.dedup:
        return "turned off"
    if images.split is None:
        return f"the dataset '{images.spec}' cannot be opened, so the images cannot be compared"
    return near_duplicates(candidate_lists(res), images.view)


def _labels(s: UnitScores, res: ScanResult, class_names: list[str], part_names: list[str] | None,
            clip: tuple[list[str], np.ndarray, float] | str, min_images: int) -> Labels:  # fmt: skip
    """Labels and best guesses of the SAE's latents (visae.analysis.labels, docs/metrics.md)."""
    dropped_S = res.rankings["max"].dropped_S
    distinct_S = s.n_images_C - (dropped_S if dropped_S is not None else 0)
    evidence = [class_evidence(s.sel.top_C, s.sel.index_C, s.n_images_C, distinct_S, min_images, class_names,
                               SELECTIVE_INDEX)]  # fmt: skip
    if s.part_C is not None and part_names:
        evidence.append(part_evidence(s.part_C, s.part_share_C, s.part_images_C, min_images, part_names, PURE_SHARE))
    if isinstance(clip, tuple):
        evidence.append(clip_evidence(clip[0], clip[1], clip[2]))
    return decide_labels(evidence, len(s.n_images_C), s.border_C, s.edge_ratio_C)


def label_counts(labels: Labels) -> dict[str, Any]:
    """How many latents carry a label, by source, and how many are unlabelled (with or without a guess)."""
    by: dict[str, int] = {}
    for src in labels.source_S:
        if src:
            by[src] = by.get(src, 0) + 1
    unlabelled = sum(1 for src in labels.source_S if not src)
    guessed = sum(1 for src, g in zip(labels.source_S, labels.guess_S) if not src and g)
    return {"by_source": by, "unlabelled": unlabelled, "guessed": guessed}


def text_labels(cfg: AnalyzeConfig, run: RunInfo, store_meta: Any, layout: Layout, sae: torch.nn.Module,
                class_names: list[str], part_names: list[str] | None) -> tuple[list[str], np.ndarray, float] | str:
    """CLIP text-tower phrases with their cosines and the random-direction threshold, or the reason there are none."""
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


def _summary(store: Any, res: ScanResult, clip: Any) -> dict[str, Any]:
    freq = res.stats.freq_S
    return {
        "n_latents": int(len(freq)), "n_images": res.n_images, "n_tokens": res.stats.n_tokens, "d": int(store.d),
        "mean_l0": float(freq.sum()) if res.stats.n_tokens else 0.0,
        "dead_pct": float(100 * (freq == 0).mean()), "dense_pct": float(100 * (freq > DENSE_FREQ).mean()),
        "n_channels": int(store.d),
        "text_labels": "clip" if isinstance(clip, tuple) else clip,
    }


def _settings(cfg: AnalyzeConfig) -> dict[str, Any]:
    """What a feature DB's content depends on (not where or how fast it was computed): kept in its meta."""
    values = cfg.model_dump(mode="json", exclude={"run", "force", "device", "batch_images"})
    for key in ("store", "vocab"):
        values[key] = str(Path(values[key]).resolve()) if values[key] else None
    return values


def _analysed_same(cfg: AnalyzeConfig, db_path: Path) -> bool:
    """True when the DB in the run was made with these settings (reused); a DB of other settings (or of a visae
    that did not record them) is refused, naming what changed."""
    try:
        with FeatureDB(db_path) as db:
            before = db.meta.get("settings")
    except VisaeError:  # an unreadable DB: analysing again needs --force, as before
        before = None
    now = _settings(cfg)
    if before == now:
        return True
    changed = ", ".join(k for k in now if before.get(k) != now[k]) if isinstance(before, dict) else ""
    raise VisaeError(f"{db_path} already exists" + (f", analysed with other settings ({changed})" if changed else ""),
                     "pass --force to analyse again")  # fmt: skip


def _meta(run: RunInfo, store: Any, layout: Layout, res: ScanResult, cfg: AnalyzeConfig,
          class_names: list[str], kinds: frozenset[int] | None, clip: Any) -> dict[str, Any]:
    from visae.store.format import TOKEN_KINDS, kinds_held

    return {
        "run": str(run.path.resolve()), "store": str(Path(store.path).resolve()), "settings": _settings(cfg),
        "backbone": str(store.meta.backbone), "layer": str(store.meta.layer),
        "layout": dict(store.meta.layout), "tokens": str(getattr(store.meta, "tokens", "")),
        "analysed_kinds": sorted(TOKEN_KINDS[k] for k in (kinds if kinds is not None else kinds_held(store.meta))),
        "grid": list(layout.map_grid), "has_grid": layout.has_grid,
        "dataset": str(store.meta.dataset), "split": str(store.meta.split), "preprocess": dict(store.meta.preprocess),
        "sae": run.cfg, "metrics": run.metrics, "heldout": run.heldout,
        "n_latents": int(len(res.stats.freq_S)), "top": cfg.top, "rankings": list(res.rankings),
        "hist_edges": HIST_EDGES.tolist(), "dense_freq": DENSE_FREQ,
        "part_top": PART_TOP, "per_image": cfg.per_image, "min_images": cfg.min_images, "pure_share": PURE_SHARE,
        "selective_index": SELECTIVE_INDEX, "random_seed": cfg.seed if cfg.random_baseline else None,
        "n_classes": len(class_names), "spare": cfg.spare if cfg.dedup else 0, "dedup_match": MATCH,
        "border_ratio": BORDER_RATIO, "clip_quantile": CLIP_QUANTILE,
        "clip_threshold": float(clip[2]) if isinstance(clip, tuple) else None,
    }


def summary(run_or_db: str | Path) -> dict[str, Any]:
    """The headline numbers of an analysed run (meta 'summary' of its feature DB)."""
    with FeatureDB(run_or_db) as db:
        return dict(db.meta["summary"])


def headlines(s: dict[str, Any]) -> dict[str, str | None]:
    """The summary's comparisons, each named with its definition, as one line each (None where
    not measurable): {"part-pure units (DEFINITION)": "SAE 1.4% (7/512 latents) vs ..."}."""
    out: dict[str, str | None] = {}
    for key, name in (("part_pure", "part-pure units"), ("class_selective", "class-selective units"),
                      ("border", "border/position units")):
        entry = s.get(key)
        out[f"{name} ({entry['definition']})" if entry and entry.get("definition") else name] = headline(entry)
    return out
