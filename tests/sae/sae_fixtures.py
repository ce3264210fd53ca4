"""Synthetic activations for the SAE tests: a planted sparse dictionary."""

from __future__ import annotations

import torch

DICT_SEED_BASE = 7_919_000
"""Offset of the dictionary seeds (see ``planted``)."""


def planted(
    n: int = 20_000,
    d: int = 32,
    s: int = 128,
    k: int = 4,
    seed: int = 0,
    noise: float = 0.0,
    draw_seed: int | None = None,
):
    """Tokens that are k-sparse non-negative combinations of s unit atoms (+ an offset).

    ``seed`` fixes the dictionary; ``draw_seed`` (default: the same stream) draws other
    tokens from the same dictionary, e.g. held-out tokens. ``noise`` adds isotropic
    Gaussian noise of that standard deviation per coordinate.

    The dictionary's generator is seeded away from small integers: ``torch.manual_seed(0)``
    followed by an SAE's ``randn(S, D)`` decoder init would otherwise draw the planted atoms
    themselves, and "recovery" would be the initialisation.
    """
    g = torch.Generator().manual_seed(DICT_SEED_BASE + seed)
    atoms_SD = torch.randn(s, d, generator=g)
    atoms_SD /= atoms_SD.norm(dim=1, keepdim=True)
    if draw_seed is not None:
        g = torch.Generator().manual_seed(draw_seed)
    idx_NK = torch.rand(n, s, generator=g).topk(k, dim=1).indices
    val_NK = 0.5 + 2 * torch.rand(n, k, generator=g)
    x_ND = torch.einsum("nk,nkd->nd", val_NK, atoms_SD[idx_NK]) + 3.0
    if noise > 0:
        x_ND += noise * torch.randn(n, d, generator=g)
    return x_ND, atoms_SD
