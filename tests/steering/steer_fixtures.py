"""Helpers shared by the steer tests."""

from __future__ import annotations

import torch

from visae.sae import SAESpec, create_sae


def random_sae(d_in: int, d_sae: int = 48, arch: str = "relu", k: int | None = None, seed: int = 0):
    """A random-init SAE of width ``d_in`` (ReLU: about half its latents fire on any token)."""
    torch.manual_seed(seed)
    sae = create_sae(SAESpec(arch=arch, d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.01)  # small: the tiny models' activations are of order 0.1
    return sae.eval()
