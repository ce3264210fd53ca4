"""Training checkpoints: everything needed to continue a run bit for bit.

One file, ``checkpoint/state.pt``, written atomically: per-SAE weights, optimizer state
and dead-latent counters, the tokens consumed (data position), the step, and the RNG
states. A kill at any moment leaves either the previous or the new checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from visae.atomic import write_with
from visae.errors import VisaeError

CKPT_DIR = "checkpoint"
CKPT_FILE = "state.pt"


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CKPT_DIR / CKPT_FILE


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> None:
    state = {**state, "rng_torch": torch.get_rng_state()}
    write_with(checkpoint_path(run_dir), lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's checkpoint, or None when it has none yet."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say so instead of a traceback
        raise VisaeError(f"checkpoint {path} cannot be read ({e})", "rerun with --force to start over") from None


def restore_rng(state: dict[str, Any]) -> None:
    if "rng_torch" in state:
        torch.set_rng_state(state["rng_torch"])
