"""Typed configs of ``visae eval`` and ``visae eval frontier``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from visae.config import Config

SUITES = ("core", "fidelity", "probe", "concepts", "ood", "ontology", "stability")
"""Metric families, in the order they run (docs/metrics.md, "Evaluation")."""

Suite = Literal["core", "fidelity", "probe", "concepts", "ood", "ontology", "stability", "all"]


class EvalConfig(Config):
    """Evaluate SAE runs on held-out data, every score next to its baselines."""

    run: list[Path] = Field(min_length=1)
    """SAE run(s) to evaluate (each a directory visae train wrote, or one SAE folder of it); repeat for several."""
    store: Path | None = None
    """A held-out store: another split extracted with the same model and layer (default: the images the
    trainer kept out of the run's training store)."""
    suite: list[Suite] = Field(["all"], validate_default=True)
    """Metric families: core (reconstruction), fidelity, probe, concepts, ood, ontology, stability, or all; repeat for several."""
    compare: Path | None = None
    """A second SAE run for the stability suite (another seed on the same store, or another backbone/layer over the same images)."""
    compare_store: Path | None = None
    """The held-out store of --compare when it reads another backbone or layer (the same images as --store)."""
    max_images: int | None = Field(None, ge=2)
    """Evaluate on at most this many held-out images (a seeded random subset)."""
    ood_split: str | None = None
    """The split that is out of distribution (default: the dataset's 'ood' split, the synthetic aircraft's withheld variants)."""
    hierarchy: Path | None = None
    """A JSON class tree {"levels": [...], "parents": {level: {child: parent}}} for the ontology suite (default: the dataset's)."""
    allow_mismatch: bool = False
    """Compare runs trained on different stores (different backbones, layers or data) without refusing."""
    seed: int = 0
    """Seed of every random choice (splits, baselines, samples)."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""

    @field_validator("suite")
    @classmethod
    def _suites(cls, v: list[str]) -> list[str]:
        return list(SUITES) if "all" in v else [s for s in SUITES if s in v]


class FrontierConfig(Config):
    """Draw the L0–NMSE frontier across runs (or the SAEs of a sweep), from their held-out evaluations."""

    run: list[Path] = Field(min_length=1)
    """Runs or sweep directories; every SAE they hold is a point."""
    out: Path | None = None
    """The PNG to write (default: frontier.png in the first run)."""
    x: Literal["l0", "d_sae"] = "l0"
    """The x axis: held-out L0, or the width."""
