"""Training checkpoints: everything needed to continue a run bit for bit.

One file, ``checkpoint/state.pt``, written atomically: per-SAE weights, optimizer state
and dead-latent counters, the tokens consumed (data position), the step, and the RNG
states. A kill at any moment leaves either the previous or the new checkpoint.

``checkpoint/state.sum.json`` records the checkpoint's checksum (``{"file", "checksums"}``), and
loading verifies it: a torn or bit-flipped state.pt is refused in one line instead of resuming
from garbage. The sidecar is renamed into place just before state.pt and lists the new digest
first, then the previous ones, so a kill between the two renames leaves a state.pt that still
matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from visae.atomic import atomic_path, write_json
from visae.checksum import default_checksum, hash_file
from visae.errors import VisaeError

CKPT_DIR = "checkpoint"
CKPT_FILE = "state.pt"
SUM_FILE = "state.sum.json"
"""Beside state.pt: the checksums it may have (the newest first)."""
KEEP_SUMS = 3


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CKPT_DIR / CKPT_FILE


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> None:
    state = {**state, "rng_torch": torch.get_rng_state()}
    path = checkpoint_path(run_dir)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest = hash_file(tmp, default_checksum())
        sums = [digest, *[d for d in _recorded(path, strict=False) if d != digest][: KEEP_SUMS - 1]]
        write_json(path.parent / SUM_FILE, {"file": CKPT_FILE, "checksums": sums})  # lands before state.pt


def load_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's checkpoint (verified against its recorded checksum), or None when it has none yet."""
    path = checkpoint_path(run_dir)
    sums = _recorded(path)
    repair = "rerun `visae train` with --force to start over, or restore the file"
    if not path.is_file():
        if sums:
            raise VisaeError(f"checkpoint {path} is missing (its {SUM_FILE} says one was written)", repair)
        return None
    if sums and hash_file(path, sums[0].split(":", 1)[0]) not in sums:
        raise VisaeError(f"checkpoint {path} fails its checksum (a torn or bit-flipped file)", repair)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say so instead of a traceback
        raise VisaeError(f"checkpoint {path} cannot be read ({e})", "rerun with --force to start over") from None


def _recorded(path: Path, strict: bool = True) -> list[str]:
    """The checksums state.pt may have (newest first); [] for a checkpoint written before they were kept
    (and, unless ``strict``, for an unreadable sidecar)."""
    f = path.parent / SUM_FILE
    if not f.is_file():
        return []
    try:
        sums = json.loads(f.read_text())["checksums"]
        if isinstance(sums, list) and sums and all(isinstance(d, str) and ":" in d for d in sums):
            return sums
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not strict:
        return []
    raise VisaeError(f"{f} is unreadable", "rerun `visae train` with --force to start over, or restore the file")


def restore_rng(state: dict[str, Any]) -> None:
    if "rng_torch" in state:
        torch.set_rng_state(state["rng_torch"])
