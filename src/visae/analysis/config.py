"""``AnalyzeConfig``: what ``visae analyze`` needs (no torch: the command line and config checks read it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from visae.config import Config

PART_TOP = 16
"""Top patches per unit used for part purity."""
PER_IMAGE = 2
"""At most this many of a unit's top patches come from one image."""
MIN_IMAGES = 8
"""... and those top patches come from at least this many distinct images."""


class AnalyzeConfig(Config):
    """Feature analysis of a trained SAE over its activation store."""

    run: Path
    """The SAE run directory (from `visae train`); the feature DB is written into it."""
    store: Path | None = None
    """Activation store to analyse; default: the store the run was trained on."""
    tokens: Literal["patch", "cls", "registers", "all"] | None = None
    """Token kinds to analyse, among those the store holds (patch: grid cells / patch tokens / pooled
    vectors); default: the kinds the SAE was trained on."""
    device: str = "auto"
    """Where the SAEs encode: auto (a GPU when there is one), cpu, cuda or cuda:N. Statistics stay on the CPU."""
    top: int = Field(32, ge=1, le=1024)
    """Top images kept per latent and ranking (with their activation maps)."""
    spare: int = Field(16, ge=0, le=1024)
    """Extra candidates kept per latent and ranking (and per unit's top patches) during the pass, so that
    near-duplicate images can be dropped and the lists still hold `top` distinct images (memory grows by
    (top + spare) / top)."""
    dedup: bool = True
    """Collapse near-duplicate images (crops, resizes, re-encodings of one photo) in top lists and top
    patches: each list keeps the best entry of each group (docs/metrics.md). Needs the store's dataset."""
    per_image: int = Field(PER_IMAGE, ge=1, le=PART_TOP)
    """At most this many of a unit's top-16 patches (for part purity) come from one image."""
    min_images: int = Field(MIN_IMAGES, ge=1)
    """A unit counts as part-pure or class-selective only with evidence from at least this many images."""
    random_baseline: bool = True
    """Also score a random-init SAE of the same shape (a second encoding per batch)."""
    seed: int = Field(0, ge=0)
    """Seed of the random-init baseline SAE."""
    batch_images: int = Field(0, ge=0)
    """Images encoded per batch; 0 picks one that keeps a batch's dense codes near 64 MiB."""
    force: bool = False
    """Replace an existing feature DB (and its heatmap cache)."""
    vocab: Path | None = None
    """Text file of phrases (one a line) for CLIP text-tower labels, added to the built-in list."""
    text_labels: bool = True
    """Try CLIP/SigLIP text-tower labels where the backbone and layer allow it."""
