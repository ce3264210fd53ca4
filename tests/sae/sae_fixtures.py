"""Synthetic activations for the SAE tests: a planted sparse dictionary."""

from __future__ import annotations

import torch


def planted(n: int = 20_000, d: int = 32, s: int = 128, k: int = 4, seed: int = 0):
    """Tokens that are k-sparse non-negative combinations of s unit atoms (+ an offset)."""
    g = torch.Generator().manual_seed(seed)
    atoms_SD = torch.randn(s, d, generator=g)
    atoms_SD /= atoms_SD.norm(dim=1, keepdim=True)
    idx_NK = torch.rand(n, s, generator=g).topk(k, dim=1).indices
    val_NK = 0.5 + 2 * torch.rand(n, k, generator=g)
    x_ND = torch.einsum("nk,nkd->nd", val_NK, atoms_SD[idx_NK]) + 3.0
    return x_ND, atoms_SD
