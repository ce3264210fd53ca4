"""Training config files (``visae train --config FILE.toml``); a sweep is one with several SAEs.

Run settings (any ``TrainConfig`` field) sit at the top level. Per-SAE settings (any
``SAEHparams`` field) sit at the top level too for a single SAE, or in one ``[[sae]]``
table per SAE, all trained from one pass over the store; top-level per-SAE keys are then
the defaults of every table::

    store = "runs/acts"
    training_tokens = 20_000_000
    expansion = 16            # every SAE below, unless its table says otherwise

    [[sae]]
    arch = "topk"
    k = 32

    [[sae]]
    arch = "batchtopk"
    k = 64
    expansion = 32

Command-line flags win over the file: run flags over its top level, per-SAE flags
(``--arch``, ``--k``, ...) over every SAE's settings. ``docs/train-config.md`` lists every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visae.config import missing, read_toml
from visae.errors import VisaeError, did_you_mean
from visae.sae.train_config import SAEHparams, TrainConfig

SAE_TABLES = ("sae", "saes")
"""Names of the per-SAE tables (``[[sae]]``; ``[[saes]]``, the field's own name, works too)."""
DOCS = "docs/train-config.md lists every key"


def run_keys() -> set[str]:
    return set(TrainConfig.model_fields) - {"saes"}


def sae_keys() -> set[str]:
    return set(SAEHparams.model_fields)


def read_train_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]] | None]:
    """(run settings, top-level per-SAE settings, the ``[[sae]]`` tables or None) of a config file."""
    path = Path(path)
    values = read_toml(path, "config file")
    found = [k for k in SAE_TABLES if k in values]
    if len(found) > 1:
        raise VisaeError(f"config file {path} has both [[sae]] and [[saes]] tables", "keep one of them")
    tables = _tables(values.pop(found[0]), path) if found else None
    run = {k: v for k, v in values.items() if k in run_keys()}
    per_sae = {k: v for k, v in values.items() if k in sae_keys()}
    unknown = sorted(set(values) - set(run) - set(per_sae))
    if unknown:
        raise VisaeError(f"config file {path}: unknown key '{unknown[0]}'",
                         did_you_mean(unknown[0], run_keys() | sae_keys() | {"sae"}) or DOCS)  # fmt: skip
    return run, per_sae, tables


def _tables(entries: Any, path: Path) -> list[dict[str, Any]]:
    entries = [entries] if isinstance(entries, dict) else entries  # a single [sae] table
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise VisaeError(f"config file {path}: 'sae' must be [[sae]] tables", "add one [[sae]] table per SAE to train")
    for i, entry in enumerate(entries, 1):
        unknown = sorted(set(entry) - sae_keys())
        if unknown:
            key = unknown[0]
            hint = (f"'{key}' is a run setting: put it above the first [[sae]] table" if key in run_keys()
                    else did_you_mean(key, sae_keys()) or DOCS)  # fmt: skip
            raise VisaeError(f"config file {path}: [[sae]] table {i} has an unknown key '{key}'", hint)
    return entries


def train_config(
    path: str | Path | None = None, run_flags: dict[str, Any] | None = None, sae_flags: dict[str, Any] | None = None
) -> TrainConfig:
    """The ``TrainConfig`` of a config file (optional) and flags; flags that are not None win."""
    run, per_sae, tables = read_train_file(path) if path is not None else ({}, {}, None)
    run.update({k: v for k, v in (run_flags or {}).items() if v is not None})
    flags = {k: v for k, v in (sae_flags or {}).items() if v is not None}
    for key in ("store", "out"):
        if run.get(key) is None:
            raise missing("visae train", TrainConfig, key, config=True)
    saes = [{**per_sae, **table, **flags} for table in (tables or [{}])]
    return TrainConfig.build(**run, saes=saes)
