"""Typed configs of the three steering commands: ``visae steer``, ``visae ablate`` and ``visae steer-eval``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from visae.config import Config

SUFFIXES = ("xmax", "x", "×")
"""'-2x', '-2xmax', '-2×': a multiple of the latent's largest activation."""


def parse_amount(text: str | float) -> tuple[float, bool]:
    """(value, relative) of '3', '-2x' (× the latent's max activation) or a float; non-finite refused."""
    s = str(text).strip().lower()
    suffix = next((x for x in SUFFIXES if s.endswith(x)), "")
    try:
        value = float(s[: len(s) - len(suffix)])
    except ValueError:
        raise ValueError(f"'{text}' is not a number, nor a multiple of the max activation such as -2x") from None
    if not math.isfinite(value):
        raise ValueError(f"'{text}' is not finite: give a finite number (or a multiple of the max activation such as -2x)")
    return value, bool(suffix)


class SteerConfig(Config):
    """Edit SAE latents on some images and show what the model then predicts."""

    run: Path
    """The SAE run (the directory visae train wrote, or one SAE folder of it)."""
    image: list[str] = Field(min_length=1)
    """Image ids of the store's split (as the report and the feature DB name them, e.g. train/000123); repeat for several."""
    latent: list[int] = Field(min_length=1)
    """Latents to edit (comma-separated or repeated: --latent 3,17)."""
    scale: str | None = None
    """Multiply the latents' activations by this factor (0 removes them, -1 flips them)."""
    set: str | None = None
    """Set the latents' activations to this value; '-2x' means -2 times the latent's largest activation."""
    add: str | None = None
    """Add this to the latents' activations ('1x': the latent's largest activation)."""
    where: list[str] = ["all"]
    """Which tokens: all (every patch), active (where the latent fires), cls (the CLS token), or grid cells Y,X (repeat)."""
    top: int = Field(5, ge=1, le=100)
    """Classes shown per image, most probable first."""
    out: Path | None = None
    """Folder for the before/after heatmaps (default: RUN/steer/images)."""
    head: Literal["auto", "classifier", "probe"] = "auto"
    """What the edit is read on: the model's own logits when it classifies the dataset's classes (auto), or a
    linear probe on its pooled output trained on the store's labels."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""

    @field_validator("scale", "set", "add")
    @classmethod
    def _amount(cls, v: str | None) -> str | None:
        if v is not None:
            parse_amount(v)
        return v

    @model_validator(mode="after")
    def _one_operation(self) -> "SteerConfig":
        given = [k for k in ("scale", "set", "add") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of --scale, --set and --add" + (f" (got {', '.join(given)})" if given else ""))
        if any(i < 0 for i in self.latent):
            raise ValueError(f"latent indices must be >= 0, got {self.latent}")
        return self


class AblateConfig(Config):
    """Blur or grey out the image regions where a latent fires, against as many random regions."""

    run: Path
    """The SAE run."""
    latent: int = Field(ge=0)
    """The latent whose cells are ablated."""
    mode: Literal["blur", "grey"] = "blur"
    """blur (Gaussian, sigma half a cell) or grey (the dataset mean the model was normalised with)."""
    images: list[str] = ["top"]
    """top (the latent's strongest held-out images) or image ids of the store's split."""
    n_images: int = Field(16, ge=1, le=10_000)
    """With --images top: how many of the latent's strongest images."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Ablate the cells where the latent fires above this share of its max on that image."""
    draws: int = Field(5, ge=1, le=100)
    """Random-cell controls per image."""
    pool: int = Field(512, ge=1)
    """With --images top: held-out images searched for the latent's strongest."""
    seed: int = 0
    """Seed of the image sample and the control draws."""
    out: Path | None = None
    """Folder for the table and figures (default: RUN/steer)."""
    head: Literal["auto", "classifier", "probe"] = "auto"
    """What the effect is read on (see visae steer --help)."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""


class SteerEvalConfig(Config):
    """Causal tests of an SAE's latents: suppression, dose-response, ablation, segmentation, ground truth."""

    run: Path
    """The SAE run (analysed: its feature DB picks the latents)."""
    latents: str = "auto"
    """auto (the most class-selective and part-selective latents) or a comma-separated list of latents."""
    per_group: int = Field(4, ge=1, le=64)
    """With --latents auto: latents taken from each group (class-selective, part-selective)."""
    random_latents: int = Field(8, ge=1, le=256)
    """Random live latents edited the same way (the random-latent baseline)."""
    directions: int = Field(3, ge=1, le=32)
    """Random directions of the same norm per latent (the random-direction baseline)."""
    n_images: int = Field(512, ge=8, le=100_000)
    """Held-out images the effects are measured on."""
    per_latent: int = Field(64, ge=1)
    """Images per latent: those where it fires most."""
    scale: float = Field(-2.0, allow_inf_nan=False)
    """Suppression: set the latent to this multiple of its max activation on every patch (SAE-V: -2)."""
    doses: list[float] = [-10, -5, -2, -1, 0, 1, 2, 5, 10]
    """Dose-response grid: multiples of the latent's max activation, set on every patch."""
    ablate_mode: Literal["blur", "grey"] = "blur"
    """Input-space ablation: blur or grey out the latent's cells."""
    draws: int = Field(5, ge=1, le=100)
    """Random-cell controls per image (ablation) and random baselines per part (segmentation)."""
    masks: Path | None = None
    """Per-patch labels for the segmentation test when the dataset has no part masks: a folder of 8-bit label
    PNGs at the image ids' paths (a/b.jpg -> MASKS/a/b.png), pixel value = part id (0 = background), and
    optionally parts.json (the part names, by id)."""
    probe_images: int = Field(1000, ge=10)
    """Store images the segmentation probe (and a stand-in classification probe) is trained on."""
    seed: int = 0
    """Seed of every random choice."""
    head: Literal["auto", "classifier", "probe"] = "auto"
    """What the effects are read on (see visae steer --help)."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    force: bool = False
    """Replace earlier results in RUN/steer."""

    @field_validator("latents")
    @classmethod
    def _latents(cls, v: str) -> str:
        if v != "auto" and not all(p.strip().isdigit() for p in v.split(",")):
            raise ValueError(f"--latents '{v}' is neither 'auto' nor a comma-separated list of latent indices")
        return v

    @field_validator("doses")
    @classmethod
    def _doses(cls, v: list[float]) -> list[float]:
        if not v or not all(math.isfinite(d) for d in v):
            raise ValueError("--doses must be finite numbers")
        return sorted(set(v))

    def latent_list(self) -> list[int] | None:
        return None if self.latents == "auto" else [int(p) for p in self.latents.split(",")]
