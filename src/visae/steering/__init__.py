"""Interventions on features: splice an SAE into a backbone at a layer and edit its latents.

``Splice(backbone, sae, layer, edit)`` replaces the layer's output by x - x_hat + x_hat_edit (the
SAE's error kept); an ``Edit`` is data (which latents, which operation, where). See docs/steering.md.
Names load on first use (the configs need no torch).
"""

from __future__ import annotations

from typing import Any

from visae.registry import lazy_names

_WHERE = {"AblateConfig": "visae.steering.config", "SteerConfig": "visae.steering.config",
          "SteerEvalConfig": "visae.steering.config", "Edit": "visae.steering.edit", "LatentOp": "visae.steering.edit",
          "Splice": "visae.steering.splice"}  # fmt: skip


def steer_eval(cfg: Any) -> dict:
    """``visae steer-eval``: see ``visae.steering.evaluate``."""
    from visae.steering.evaluate import steer_eval as run

    return run(cfg)


__getattr__ = lazy_names(__name__, _WHERE)


__all__ = sorted([*_WHERE, "steer_eval"])
