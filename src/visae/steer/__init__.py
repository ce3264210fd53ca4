"""Interventions on features: splice an SAE into a backbone at a layer and edit its latents.

``Splice(backbone, sae, layer, edit)`` replaces the layer's output by x - x_hat + x_hat_edit (the
SAE's error kept); an ``Edit`` is data (which latents, which operation, where). See docs/steering.md.
"""

from visae.steer.edit import Edit, LatentOp
from visae.steer.splice import Splice

__all__ = ["Edit", "LatentOp", "Splice"]
