"""Interventions on features: splice an SAE into a backbone at a layer and edit its latents.

``Splice(backbone, sae, layer, edit)`` replaces the layer's output by x - x_hat + x_hat_edit (the
SAE's error kept); an ``Edit`` is data (which latents, which operation, where). See docs/steering.md.
"""

from visae.steering.config import AblateConfig, SteerConfig, SteerEvalConfig
from visae.steering.edit import Edit, LatentOp
from visae.steering.splice import Splice


def steer_eval(cfg: SteerEvalConfig) -> dict:
    """``visae steer-eval``: see ``visae.steering.evaluate``."""
    from visae.steering.evaluate import steer_eval as run

    return run(cfg)


__all__ = ["AblateConfig", "Edit", "LatentOp", "Splice", "SteerConfig", "SteerEvalConfig", "steer_eval"]
