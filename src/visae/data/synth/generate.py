"""The ``synth-aircraft`` stage: generate the procedural aircraft dataset into a directory.

Layout (format_version 1)::

    DIR/visae.json          marker (kind synth-aircraft; ``complete`` turns true at the end)
    DIR/info.json           seed, size, split sizes, class_names, ood_variants, part_names, ...
    DIR/hierarchy.json      variant -> family -> manufacturer, every variant
    DIR/<split>/images.npy  uint8 (N, S, S, 3)
    DIR/<split>/parts.npy   uint8 (N, S, S), ids into part_names (0 = background)
    DIR/<split>/manifest.jsonl  one row per image: ids, labels, every generating factor
    DIR/preview.png         samples beside their colourised part maps

Each split is cut into fixed chunks of ``CHUNK`` images; chunk ``k`` of split ``j`` draws
from ``default_rng([seed, j, k + 1])``, so the bytes depend on the seed only, never on
the number of workers. Arrays are written through memory maps at temporary names and
renamed when complete.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np
from typing import Literal

from pydantic import Field, model_validator

from visae.artifact import prepare_out, read_marker, write_marker
from visae.atomic import atomic_path, write_json, write_text
from visae.config import Config
from visae.data.synth import catalog
from visae.data.synth.factors import sample_factors
from visae.data.synth.preview import write_preview
from visae.data.synth.render import render_chunk
from visae.errors import VisaeError
from visae.lock import locked
from visae.progress import info, make_progress

KIND = "synth-aircraft"
FORMAT_VERSION = 1
CHUNK = 128
"""Images per chunk: the unit of work and of seeding (changing it changes the images)."""
SPLITS = ("train", "val", "ood")
MAX_IMAGES = 2_000_000


class SynthAircraftConfig(Config):
    """Generate the procedural aircraft dataset (visae's stand-in for FGVC-Aircraft)."""

    out: Path
    """Directory to write the dataset into (refused if it holds another artifact, unless --force)."""
    n_train: int = Field(default=24_000, ge=0, le=MAX_IMAGES)
    """Training images, balanced over the in-distribution variants."""
    n_val: int = Field(default=2_000, ge=0, le=MAX_IMAGES)
    """Validation images, balanced over the in-distribution variants."""
    n_ood: int = Field(default=1_000, ge=0, le=MAX_IMAGES)
    """Images of the withheld (out-of-distribution) variants."""
    size: int = Field(default=64, ge=32, le=512)
    """Image side in pixels (square images)."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    """Random seed: the same seed gives byte-identical files, whatever the number of workers."""
    difficulty: Literal["easy", "hard"] = "easy"
    """Pose and clutter: 'easy' = mostly top-down views, aircraft filling 80-97% of the frame,
    light clouds, at most one small distractor behind it (a small ConvNeXt learns the 22 classes
    in minutes on a CPU); 'hard' = oblique views from above and below, banked, smaller, heavier
    clouds and up to three distractors, some in front."""
    workers: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    """Processes that render in parallel."""
    force: bool = False
    """Replace whatever --out holds."""

    @model_validator(mode="after")
    def _enough_images(self) -> "SynthAircraftConfig":
        n_classes = len(catalog.class_names())
        if 0 < self.n_train < n_classes:
            raise ValueError(f"n_train={self.n_train} is fewer than the {n_classes} classes; use 0 or >= {n_classes}")
        if self.n_train + self.n_val + self.n_ood == 0:
            raise ValueError("n_train, n_val and n_ood are all 0: nothing to generate")
        return self


def assign_variants(seed: int, split_index: int, split: str, n: int) -> list[str]:
    """Balanced, shuffled variant of every image of a split (ood split: the withheld variants)."""
    names = catalog.ood_variants() if split == "ood" else catalog.class_names()
    rng = np.random.default_rng([seed, split_index, 0])
    order = rng.permutation(n) % len(names)
    return [names[k] for k in order]


def _manifest_row(split: str, index: int, f: dict) -> str:
    names = catalog.class_names()
    row = {"index": index, "id": f"{split}/{index:06d}", "variant": f["variant"], "family": f["family"],
           "manufacturer": f["manufacturer"], "label": names.index(f["variant"]) if f["variant"] in names else -1}
    row.update({k: v for k, v in f.items() if k not in row})
    return json.dumps(row, separators=(",", ":"))


def render_task(task: tuple) -> tuple[int, int, list[str]]:
    """Render one chunk and write it into the split's memory-mapped arrays (runs in a worker)."""
    seed, split_index, split, k, start, variants, size, difficulty, images_path, parts_path = task
    rng = np.random.default_rng([seed, split_index, k + 1])
    factors = [sample_factors(rng, v, difficulty) for v in variants]
    images, parts = render_chunk(rng, factors, size)
    for path, arr in ((images_path, images), (parts_path, parts)):
        mm = np.load(path, mmap_mode="r+")
        mm[start:start + len(arr)] = arr  # no msync per chunk: the rename step fsyncs once
        del mm
    return k, len(variants), [_manifest_row(split, start + i, f) for i, f in enumerate(factors)]


def _alloc(path: Path, shape: tuple[int, ...]) -> None:
    if shape[0] == 0:
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(shape, dtype=np.uint8))
    else:
        np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()


def _write_split(cfg: SynthAircraftConfig, split_index: int, split: str, n: int, pool, progress) -> None:
    out = cfg.out / split
    out.mkdir(parents=True, exist_ok=True)
    variants = assign_variants(cfg.seed, split_index, split, n)
    bar = progress.add_task(split, total=n, info="")
    rows: list[list[str]] = [[] for _ in range(-(-n // CHUNK))]
    with atomic_path(out / "images.npy") as t_images, atomic_path(out / "parts.npy") as t_parts:
        _alloc(t_images, (n, cfg.size, cfg.size, 3))
        _alloc(t_parts, (n, cfg.size, cfg.size))
        tasks = [(cfg.seed, split_index, split, k, s, variants[s:s + CHUNK], cfg.size, cfg.difficulty,
                  str(t_images), str(t_parts)) for k, s in enumerate(range(0, n, CHUNK))]
        results = pool.imap_unordered(render_task, tasks) if pool is not None else map(render_task, tasks)
        for k, m, chunk_rows in results:
            rows[k] = chunk_rows
            progress.advance(bar, m)
    write_text(out / "manifest.jsonl", "".join(r + "\n" for chunk in rows for r in chunk))


def _info(cfg: SynthAircraftConfig) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "generator": "visae.synth-aircraft",
        "seed": cfg.seed,
        "size": cfg.size,
        "difficulty": cfg.difficulty,
        "splits": {"train": cfg.n_train, "val": cfg.n_val, "ood": cfg.n_ood},
        "class_names": catalog.class_names(),
        "ood_variants": catalog.ood_variants(),
        "part_names": list(catalog.PART_NAMES),
        "chunk_size": CHUNK,
        "variants": {v.name: catalog.part_choices(v.name) for v in catalog.VARIANTS},
    }


def _preview(out: Path, cfg: SynthAircraftConfig) -> None:
    split = next(s for s in ("val", "train", "ood") if getattr(cfg, f"n_{s}") > 0)
    images = np.load(out / split / "images.npy", mmap_mode="r")[:32]
    parts = np.load(out / split / "parts.npy", mmap_mode="r")[:32]
    write_preview(out / "preview.png", np.asarray(images), np.asarray(parts), catalog.PART_NAMES)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which terminates them and removes the temporary files."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(workers: int, n_chunks: int):
    if workers <= 1 or n_chunks <= 1:
        return None
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(min(workers, n_chunks), initializer=_ignore_sigint)


def generate_synth_aircraft(cfg: SynthAircraftConfig) -> Path:
    """Generate the dataset described by ``cfg`` into ``cfg.out``; returns the directory."""
    with locked(cfg.out):  # one writer per output directory, until the marker says complete
        return _generate(cfg)


def _generated_same(cfg: SynthAircraftConfig) -> bool:
    """Whether ``cfg.out`` already holds this very dataset (reused, as extract and train reuse theirs); a dataset
    generated with other settings is refused, naming what changed."""
    out = Path(cfg.out)
    marker = read_marker(out) if out.is_dir() and not cfg.force else None
    if not marker or marker.get("kind") != KIND or not marker.get("complete") or not (out / "info.json").is_file():
        return False
    try:
        before = json.loads((out / "info.json").read_text())
    except (OSError, ValueError):
        return False
    now = json.loads(json.dumps(_info(cfg)))
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        raise VisaeError(f"{out} already holds a synth-aircraft dataset generated with other settings ({', '.join(changed)})",
                         "pass --force to replace it, or choose another --out")  # fmt: skip
    info(f"{out}: already generated (same settings); pass --force to redo it")
    return True


def _generate(cfg: SynthAircraftConfig) -> Path:
    if _generated_same(cfg):
        return Path(cfg.out)
    try:
        out = prepare_out(cfg.out, KIND, force=cfg.force)
    except VisaeError as e:
        raise VisaeError(e.message, "pass --force to replace it, or choose another --out") from None
    write_marker(out, KIND, format_version=FORMAT_VERSION, complete=False)
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "ood": cfg.n_ood}
    pool = _pool(cfg.workers, sum(-(-n // CHUNK) for n in sizes.values()))
    try:
        with make_progress() as progress:
            for j, split in enumerate(SPLITS):
                _write_split(cfg, j, split, sizes[split], pool, progress)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    write_json(out / "hierarchy.json", catalog.hierarchy().to_json())
    _preview(out, cfg)
    write_json(out / "info.json", _info(cfg))
    write_marker(out, KIND, format_version=FORMAT_VERSION, complete=True)
    return out
