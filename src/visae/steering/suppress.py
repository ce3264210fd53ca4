"""Feature-space tests on a classifier: suppress a latent, against a random latent and a random direction.

For latent l with largest activation M_l (over the store), on the held-out images where l fires
most (its "own" images):

    suppress   a_l := s · M_l on every patch (s = −2, the SAE-V protocol)
    zero       a_l := 0 where it fires (removing the feature)
    dose       a_l := s · M_l on every patch for each s of a grid (−10 … +10)

and the same edits along ``directions`` random unit vectors scaled to ||W_dec[l]|| (same images,
same coefficients: x' = x + (z_edit − z)·r), the random-direction baseline. A random live latent
is tested like any other latent, on its own images: the random-latent baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visae.steering.edit import Edit, LatentOp
from visae.steering.effects import effects


@dataclass
class Pool:
    """The held-out images an evaluation runs on, with what every test needs of them."""

    images: Any
    """The ImageSet."""
    logits_BL: torch.Tensor
    """Clean logits."""
    peak_BS: torch.Tensor
    """Each latent's largest activation over the image's patches."""
    x_BND: torch.Tensor | None = None
    """The layer's tokens (for tests that read the layer itself)."""
    codes_BGS: torch.Tensor | None = None
    """Dense codes of the patch tokens."""


def own_images(pool: Pool, latent: int, n: int) -> np.ndarray:
    """Rows of the ``n`` pool images where ``latent`` fires most (only images where it fires)."""
    peak_B = pool.peak_BS[:, latent]
    rows = torch.nonzero(peak_B > 0)[:, 0]
    order = torch.argsort(peak_B[rows], descending=True, stable=True)
    return rows[order[:n]].numpy()


def suppress_edit(latent: int, value: float) -> Edit:
    return Edit(ops=[LatentOp(latents=[latent], op="set", value=float(value), where="all")])


def zero_edit(latent: int) -> Edit:
    return Edit(ops=[LatentOp(latents=[latent], op="set", value=0.0, where="active")])


def random_directions(w_D: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    """``n`` random unit directions (Gaussian, normalised) scaled to the norm of ``w_D``."""
    g = torch.Generator().manual_seed(seed)
    r_ND = torch.randn(n, w_D.numel(), generator=g, dtype=torch.float32)
    r_ND = r_ND / r_ND.norm(dim=1, keepdim=True) * float(w_D.float().norm())
    return list(r_ND)


def measure(steerer: Any, pool: Pool, rows: np.ndarray, edit: Edit, directions: dict[int, torch.Tensor] | None = None):
    """(Effects, logits after) of ``edit`` on the pool images ``rows``."""
    imgs = pool.images
    r = torch.from_numpy(rows)
    after_BL = steerer.logits(imgs.pixels_BCHW[r], edit, directions)
    before_BL = pool.logits_BL[r]
    eff = effects(before_BL, after_BL, imgs.label_B[rows], steerer.class_names, hierarchy_of(steerer))
    return eff, after_BL


def hierarchy_of(steerer: Any) -> Any:
    return getattr(steerer.dataset, "hierarchy", None) if steerer.head.kind == "classifier" else None


def latent_effects(steerer: Any, pool: Pool, latent: int, *, per_latent: int, scale: float, n_directions: int,
                   seed: int) -> dict[str, Any]:  # fmt: skip
    """Suppression and zero-ablation of one latent on its own images, and the random-direction baseline."""
    rows = own_images(pool, latent, per_latent)
    out: dict[str, Any] = {"latent": latent, "images": int(len(rows))}
    if not len(rows):
        return out
    max_act = float(steerer.max_act()[latent])
    w_D = steerer.sae.W_dec[latent].detach().cpu()
    dirs = random_directions(w_D, n_directions, seed * 100_003 + latent)
    for name, edit in (("suppress", suppress_edit(latent, scale * max_act)), ("zero", zero_edit(latent))):
        eff, _ = measure(steerer, pool, rows, edit)
        out[name] = eff.summary()
        out[f"{name}_random_direction"] = mean_summary([measure(steerer, pool, rows, edit, {latent: d})[0].summary() for d in dirs])
    return out


def dose_response(steerer: Any, pool: Pool, latent: int, doses: list[float], per_latent: int) -> list[dict[str, Any]]:
    """Effects of a_l := s · M_l on every patch for each dose s, on the latent's own images."""
    rows = own_images(pool, latent, per_latent)
    if not len(rows):
        return []
    max_act = float(steerer.max_act()[latent])
    out = []
    for s in doses:
        eff, _ = measure(steerer, pool, rows, suppress_edit(latent, s * max_act))
        out.append({"dose": s, **eff.summary()})
    return out


def mean_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Key-wise mean of effect summaries (numeric keys; None where no summary has the key)."""
    out: dict[str, Any] = {}
    for key in summaries[0] if summaries else []:
        vals = [s[key] for s in summaries if isinstance(s.get(key), (int, float))]
        out[key] = float(np.mean(vals)) if vals else None
    return out
