"""Typed configs of ``visae train``: the shared run settings and one entry per SAE.

A single run is one ``SAEHparams``; a sweep (``--config sweep.toml`` with [[sae]] tables) is several, all fed
the same batches from one pass over the store.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from visae.config import Config
from visae.sae.spec import SAESpec, needs_k

DEFAULT_K = 32
DEFAULT_SPARSITY = {"l1": 5.0, "l0": 1.0}
"""Default sparsity coefficient by the architecture's sparsity term (inputs normalised
to mean squared norm D; reconstruction loss summed over D)."""


class SAEHparams(Config):
    """One SAE of a run: architecture, size and its own optimisation settings."""

    name: str | None = None
    """Name inside the run (folder RUN/saes/NAME); default arch-kK-xE, e.g. 'topk-k32-x16'."""
    arch: str = "topk"
    """Architecture: relu, topk, batchtopk, jumprelu, matryoshka."""
    k: int | None = Field(default=None, gt=0)
    """Active latents per token for top-k families (default 32)."""
    expansion: int = Field(default=16, gt=0)
    """Width as a multiple of the store's d (ignored when d_sae is set)."""
    d_sae: int | None = Field(default=None, gt=0)
    """Explicit number of latents."""
    lr: float | None = Field(default=None, gt=0)
    """Adam learning rate (default 2e-4 * sqrt(16384 / d_sae), Gao et al.'s scaling)."""
    sparsity_coeff: float | None = Field(default=None, ge=0)
    """Weight of the sparsity penalty (relu: L1, default 5; jumprelu: L0, default 1)."""
    auxk_coeff: float = Field(default=1 / 32, ge=0)
    """Weight of the AuxK dead-latent loss (top-k families)."""
    prefixes: list[int] | None = None
    """Matryoshka nested prefix sizes (default d_sae/16 ... d_sae)."""
    bandwidth: float = Field(default=0.001, gt=0)
    """JumpReLU straight-through bandwidth."""
    threshold_init: float = Field(default=0.001, gt=0)
    """JumpReLU initial threshold."""

    @model_validator(mode="after")
    def _arch_known(self) -> "SAEHparams":
        needs_k(self.arch)
        return self

    def spec(self, d_in: int) -> SAESpec:
        takes_k = needs_k(self.arch)
        return SAESpec.build(
            arch=self.arch,
            d_in=d_in,
            d_sae=self.d_sae or self.expansion * d_in,
            k=(self.k or DEFAULT_K) if takes_k else None,
            prefixes=self.prefixes,
            bandwidth=self.bandwidth,
            threshold_init=self.threshold_init,
        )

    def label(self) -> str:
        if self.name:
            return self.name
        width = f"s{self.d_sae}" if self.d_sae else f"x{self.expansion}"
        k = f"-k{self.k or DEFAULT_K}" if needs_k(self.arch) else ""
        return f"{self.arch}{k}-{width}"

    def learning_rate(self, d_sae: int) -> float:
        return self.lr or 2e-4 * math.sqrt(16384 / d_sae)


class TrainConfig(Config):
    """``visae train``: train one or several SAEs on an activation store."""

    store: str
    """Activation store directory (from visae extract)."""
    out: str
    """Run directory to write (checkpoint, metrics.jsonl, plots, saes/NAME/)."""
    saes: list[SAEHparams] = Field(default_factory=lambda: [SAEHparams()], min_length=1)
    """The SAEs to train on the same batches."""
    training_tokens: int | None = Field(default=None, gt=0)
    """Training tokens (default: one pass over the training tokens of the store)."""
    tokens: Literal["patch", "cls", "registers", "all"] | None = None
    """Token kinds to train on, among those the store holds: patch (grid cells / patch tokens / pooled
    vector), cls, registers or all (default: the store's own selection; a store of all kinds trains on patch)."""
    holdout: float = Field(default=0.05, ge=0, lt=1)
    """Share of the store's images kept out of training for held-out evaluation (0: none; ignored with
    eval_store). At most eval_tokens worth of images are held out."""
    eval_tokens: int = Field(default=131_072, gt=0)
    """Held-out tokens on which the saved (inference-time) SAE is evaluated."""
    eval_every: int | None = Field(default=None, gt=0)
    """Training tokens between held-out evaluations (default: ten evaluations per run)."""
    eval_store: str | None = None
    """Evaluate on this store (another split, same backbone and layer) instead of a held-out share."""
    batch_size: int = Field(default=4096, gt=0)
    """Tokens per step."""
    seed: int = 0
    """Seed for initialisation and data order."""
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    """Compute dtype: bf16 runs the encoder under bf16 autocast (weights stay fp32); auto is bf16 on a
    GPU and fp32 on a CPU (where bf16 buys less)."""
    device: str = "auto"
    """'auto' (cuda when available), 'cpu' or 'cuda[:i]'."""
    parallel: Literal["data", "sweep", "latents"] = "data"
    """How a torchrun job splits the run over its ranks (one process ignores it): data (every rank trains every
    SAE on its share of each batch), sweep (each rank trains its own SAEs of the sweep on whole batches) or latents
    (each rank holds a slice of every SAE's latents, the top-k chosen over all of them: SAEs too wide for one
    device; topk and batchtopk). docs/distributed.md."""
    stream: Literal["auto", "global", "split"] = "auto"
    """How the ranks of a data-parallel torchrun job read the store: global (every rank reads each global batch and
    keeps its rows: exactly one process's batches), split (each rank reads its own share of the store's blocks, once:
    1/N of the reads, batches as random but not the same ones) or auto (split when the job spans several machines)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""
    force: bool = False
    """Replace whatever --out holds."""
    lr_warmup: float = Field(default=0.01, ge=0, le=1)
    """Fraction of steps with linear learning-rate warmup."""
    lr_decay: float = Field(default=0.2, ge=0, le=1)
    """Final fraction of steps with linear learning-rate decay to 0."""
    sparsity_warmup: float = Field(default=0.05, ge=0, le=1)
    """Fraction of steps over which the sparsity coefficient ramps up from 0."""
    grad_clip: float = Field(default=1.0, gt=0)
    """Gradient norm clip."""
    dead_tokens: int | None = Field(default=None, gt=0)
    """A latent that has not fired for this many training tokens is dead (AuxK trains it); default:
    dead_fraction of the run's tokens."""
    dead_fraction: float = Field(default=0.1, gt=0, le=1)
    """Dead-latent window as a share of the run's training tokens (when dead_tokens is not given)."""
    checkpoint_every: int = Field(default=10_000_000, gt=0)
    """Tokens between checkpoints."""
    log_every: int = Field(default=20, gt=0)
    """Steps between metric lines."""
    median_sample: int = Field(default=65536, gt=0)
    """Tokens sampled for the geometric-median b_dec init."""
    normalize: bool = True
    """Train on (x - mean) * scale (store statistics, mean squared norm D); the scaling is
    folded into the saved weights either way."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, values: Any) -> Any:
        """Configs written before 0.2 kept the training token count in ``tokens``."""
        if isinstance(values, dict) and isinstance(values.get("tokens"), int) and "training_tokens" not in values:
            values = {**values, "training_tokens": values["tokens"]}
            values.pop("tokens")
        return values

    @model_validator(mode="after")
    def _unique_names(self) -> "TrainConfig":
        if self.resume and self.force:
            raise ValueError("--resume and --force contradict each other (continue the run, or start it over?): pass one")
        names = [h.label() for h in self.saes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"SAE names must be unique within a run; repeated: {', '.join(sorted(dup))}")
        return self

    def fingerprint(self) -> dict:
        """What must not change between a run and its --resume."""
        from pathlib import Path

        values = self.model_dump(exclude={"resume", "force", "out", "device", "parallel", "stream"})
        values["store"] = str(Path(self.store).resolve())
        return values
