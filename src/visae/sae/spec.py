"""What an SAE is, without torch: its spec, and the architectures ``--arch`` names.

The configs (``SAESpec``, ``visae.sae.train_config``) and the command line read this module only, so that
``visae --help`` and config validation need not import torch. ``ARCH_NEEDS_K`` must list the architectures that
``visae.sae.base.ARCHS`` registers, with the same ``needs_k`` (a test checks it).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from visae.config import Config
from visae.errors import VisaeError, did_you_mean

ARCH_NEEDS_K = {"relu": False, "topk": True, "batchtopk": True, "jumprelu": False, "matryoshka": True}
"""Architecture name -> whether it takes k (active latents per token)."""


def needs_k(arch: str) -> bool:
    """Whether ``arch`` takes k; an unknown name is a one-line error with a suggestion."""
    if arch not in ARCH_NEEDS_K:
        raise VisaeError(f"unknown SAE architecture '{arch}'", did_you_mean(arch, ARCH_NEEDS_K) or f"known: {', '.join(sorted(ARCH_NEEDS_K))}")
    return ARCH_NEEDS_K[arch]


class SAESpec(Config):
    """Shape and activation of one SAE: everything needed to rebuild it from weights."""

    arch: str
    """Architecture name: relu, topk, batchtopk, jumprelu, matryoshka."""
    d_in: int = Field(gt=0)
    """Input (model) dimension D."""
    d_sae: int = Field(gt=0)
    """Number of latents S."""
    k: int | None = Field(default=None, gt=0)
    """Active latents per token (topk, batchtopk: on average; matryoshka)."""
    prefixes: list[int] | None = None
    """Matryoshka nested prefix sizes, increasing, the last one equal to d_sae
    (default: d_sae/16, /8, /4, /2, 1)."""
    bandwidth: float = Field(default=0.001, gt=0)
    """JumpReLU straight-through kernel bandwidth (in normalised activation units)."""
    threshold_init: float = Field(default=0.001, gt=0)
    """JumpReLU initial threshold."""

    @model_validator(mode="after")
    def _check(self) -> "SAESpec":
        if needs_k(self.arch) and self.k is None:
            raise ValueError(f"architecture '{self.arch}' needs k (--k)")
        if self.k is not None and self.k > self.d_sae:
            raise ValueError(f"k={self.k} is larger than the number of latents {self.d_sae}")
        return self
