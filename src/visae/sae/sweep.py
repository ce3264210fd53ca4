"""Sweeps: several SAEs trained from one pass over the store (each batch fed to all).

A sweep file is TOML: run settings at the top level (any ``TrainConfig`` field) and one
``[[sae]]`` table per SAE (any ``SAEHparams`` field)::

    store = "runs/acts"
    tokens = 20_000_000

    [[sae]]
    arch = "topk"
    k = 32

    [[sae]]
    arch = "batchtopk"
    k = 64
    expansion = 32

Command-line flags override the top level; per-SAE flags (``--arch``, ``--k``, ...) fill
in what a ``[[sae]]`` table leaves out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visae.config import read_toml
from visae.errors import VisaeError
from visae.sae.train_config import TrainConfig


def load_sweep(path: str | Path, sae_defaults: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    path = Path(path)
    values = read_toml(path, "sweep file")
    entries = values.pop("sae", None)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise VisaeError(f"sweep file {path} has no [[sae]] tables", "add one [[sae]] table per SAE to train")
    base = {k: v for k, v in (sae_defaults or {}).items() if v is not None}
    values["saes"] = [{**base, **entry} for entry in entries]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.build(**values)
