"""The baselines every feature measure is reported against, and the one-line comparison.

- ``raw``: the store's raw channels, centred on the analysed tokens' mean, each sign a unit of
  its own (``relu(x_d - mean_d)`` and ``relu(mean_d - x_d)``), so 2D units: a channel's
  negative direction can be part-pure or class-selective too.
- ``random``: an SAE of the same architecture and shape, randomly initialised with a fixed
  seed (``RANDOM_INIT_SEED`` + seed: never the trainer's own seed, which would rebuild the trained
  SAE's starting weights), its normalisation folded in as the trainer folds a trained one
  (``b_dec`` at the training mean).

A measure is reported as the fraction of each population that passes it, never as a count
alone: populations differ in size (S latents vs 2D signed channels).
"""

from __future__ import annotations

from typing import Any

import torch

POPULATIONS = {"sae": ("SAE", "latents"), "raw": ("raw channels", "signed channels"),
               "random": ("random-init SAE", "latents")}  # fmt: skip
"""Population key -> (name in the headline, what its units are)."""


RANDOM_INIT_SEED = 104_729
"""Offset of the random-init baseline's seed. The trainer seeds an SAE's initialisation with the run's seed
(0 by default), so a baseline drawn with that same seed would be the trained SAE's own starting point, not an
independent random SAE; seeds from RANDOM_INIT_SEED on are not run seeds anyone uses by accident."""


def random_sae(sae: torch.nn.Module, mean_D: torch.Tensor, scale: float, seed: int) -> torch.nn.Module | str:
    """A freshly initialised SAE of ``sae``'s spec taking raw activations (seed ``RANDOM_INIT_SEED + seed``), or why
    there is none."""
    from visae.sae.base import SAE, create_sae

    spec = getattr(sae, "spec", None)
    if not isinstance(sae, SAE) or spec is None:
        return "the SAE has no visae spec to rebuild it from"
    with torch.random.fork_rng(devices=[]):  # a fixed seed, without touching the caller's RNG
        torch.manual_seed(RANDOM_INIT_SEED + seed)
        rand = create_sae(spec)
    rand.fold_normalization(mean_D.float(), scale)  # b_dec = 0 in training space -> the mean
    return rand.eval()


def run_normalisation(normalization: dict[str, Any] | None, mean_D: torch.Tensor,
                      default_scale: float) -> tuple[torch.Tensor, float]:  # fmt: skip
    """(mean, scale) the run trained on: its recorded scale (cfg.json) and the training kinds' mean;
    an SAE that recorded none is taken to use the trainer's default (the store's statistics)."""
    if normalization is None:
        return mean_D, default_scale
    if normalization.get("trained_on") == "x":
        return torch.zeros_like(mean_D), 1.0
    return mean_D, float(normalization.get("scale", default_scale))


def population(mask: Any, what: str) -> dict[str, Any]:
    """``{"n", "of", "frac", "what"}`` of a boolean mask over one population's units."""
    n, of = int(mask.sum()), int(len(mask))
    return {"n": n, "of": of, "frac": n / of if of else None, "what": what}


def measure(masks: dict[str, Any], why_not: dict[str, str] | None = None) -> dict[str, Any]:
    """One measure over every population: ``{key: population or {"reason": ...}}``."""
    out: dict[str, Any] = {k: population(m, POPULATIONS[k][1]) for k, m in masks.items()}
    for k, reason in (why_not or {}).items():
        out.setdefault(k, {"reason": reason})
    return out


def headline(entry: dict[str, Any] | None) -> str | None:
    """'SAE 1.4% (7/512 latents) vs raw channels 0.0% (0/128 signed channels) vs random-init SAE 0.2% (1/512 latents)'."""
    if not entry:
        return None
    parts = []
    for key, (name, _) in POPULATIONS.items():
        pop = entry.get(key)
        if pop is None:
            continue
        if pop.get("frac") is None:
            parts.append(f"{name} n/a ({pop.get('reason', 'no units')})")
        else:
            parts.append(f"{name} {100 * pop['frac']:.1f}% ({pop['n']}/{pop['of']} {pop['what']})")
    return " vs ".join(parts)
