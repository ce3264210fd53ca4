"""``ReportConfig``: what ``visae report`` needs (no torch: the command line reads it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from visae.config import Config


class ReportConfig(Config):
    """Build the static HTML report of an analysed run."""

    run: Path
    """The SAE run directory, analysed with `visae analyze` (it holds features.sqlite)."""
    out: Path | None = None
    """Where to write the HTML file; default RUN/report.html."""
    latents: int = Field(12, ge=1, le=200)
    """Latent cards per section (and per frequency band: a third of this, at least 2)."""
    images: int = Field(5, ge=1, le=32)
    """Top images (heatmaps) shown per latent."""
    thumb: int = Field(112, ge=32, le=512)
    """Side of each heatmap thumbnail, in pixels."""
    force: bool = False
    """Overwrite an --out file that visae did not write."""
