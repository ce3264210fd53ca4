"""The ground-truth check: does suppressing a part's latent move predictions toward classes that differ in that part?

On the synthetic aircraft every class is a combination of generating factors, and each part
has its own (``PART_FACTORS``: the engine part is drawn from the ``engines`` factor, the nose from
``nose``, ...). For an image of true class t, a part p and an edit with probabilities p before
and p' after, the classes that differ from t in p are D_p(t) = {c ≠ t : factors_p(c) ≠ factors_p(t)}.

    gain       g_c = max(0, p'_c − p_c)                  for c ≠ t
    lift       (Σ_images Σ_{c ∈ D} g_c / Σ_images |D|) / (Σ_images Σ_{c ∈ A} g_c / Σ_images |A|)
               with A = A_p(t) the other classes that agree with t in p; over images where both
               sets are non-empty. 1: the gain goes to classes regardless of p; > 1: toward
               classes that differ in p (the gain per class, so set sizes do not matter)
    directed   share = Σ_images Σ_{c ∈ D} g_c / Σ_images Σ_{c ≠ t} g_c, next to its
    chance     share, the mean over the images of |D| / (C − 1) (the gain spread evenly)
    flips      among images whose top-1 left t, the share whose new top-1 is in D

No two classes of the catalog differ in one part only, so "differs only in that part" is empty
and the lift is the measure. A part latent passes when its lift is above 1 and above the lifts
of the random baselines (random latents and random directions scored against the same part).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visae.steering.suppress import measure, own_images, random_directions, suppress_edit

TRUTH_LATENTS = 16
"""Part latents the check scores (the most part-selective first)."""
MIN_LIFT_IMAGES = 16
"""A part latent enters the headline when at least this many of its images have classes on both sides of the
part (differing and agreeing): with fewer the lift has no power."""

PART_FACTORS: dict[str, list[str]] = {
    "engine": ["engines"],
    "propeller": ["engines"],
    "nose": ["nose"],
    "tail": ["tail"],
    "wing": ["planform", "wing_mount", "winglets"],
    "window": ["window_rows"],
    "fuselage": ["length", "girth"],
    "stripe": ["manufacturer"],
}
"""Which generating factors of the synthetic aircraft decide what each part looks like."""


def class_factors(dataset: Any) -> dict[str, dict[str, Any]] | None:
    """Generating factors of every class of ``dataset`` (the synthetic aircraft), None for other datasets."""
    if not str(getattr(dataset, "spec", "")).startswith("synth-aircraft"):
        return None
    from visae.data.synth.catalog import part_choices

    return {name: part_choices(name) for name in dataset.class_names}


def differs_LL(factors: dict[str, dict[str, Any]], class_names: list[str], part: str) -> np.ndarray | None:
    """(L, L) bool: class c differs from class t in the factors of ``part`` (None: no factors for the part)."""
    keys = PART_FACTORS.get(part)
    if not keys:
        return None
    sig = [tuple(factors[c][k] for k in keys) for c in class_names]
    return np.array([[a != b for b in sig] for a in sig], dtype=bool)


def directed(before_BL: torch.Tensor, after_BL: torch.Tensor, labels_B: np.ndarray, diff_LL: np.ndarray) -> dict[str, Any]:
    """The directed share, its chance level and the flip version, for one edit on some images."""
    keep = labels_B >= 0
    p_BL = before_BL.double().softmax(1).numpy()[keep]
    q_BL = after_BL.double().softmax(1).numpy()[keep]
    t_B = labels_B[keep]
    n_cls = p_BL.shape[1]
    gain_BL = np.clip(q_BL - p_BL, 0, None)
    gain_BL[np.arange(len(t_B)), t_B] = 0
    in_D_BL = diff_LL[t_B]
    total = float(gain_BL.sum())
    top_after = q_BL.argmax(1)
    left = top_after != t_B
    in_A_BL = ~in_D_BL
    in_A_BL[np.arange(len(t_B)), t_B] = False
    both = in_D_BL.any(1) & in_A_BL.any(1)
    per_D = (gain_BL * in_D_BL)[both].sum() / max(in_D_BL[both].sum(), 1)
    per_A = (gain_BL * in_A_BL)[both].sum() / max(in_A_BL[both].sum(), 1)
    return {
        "images": int(len(t_B)),
        "lift": float(per_D / per_A) if both.any() and per_A > 1e-12 else None,
        "lift_images": int(both.sum()),
        "directed_share": float((gain_BL * in_D_BL).sum() / total) if total > 1e-9 else None,
        "chance_share": float(in_D_BL.sum(1).mean() / (n_cls - 1)) if len(t_B) else None,
        "flips": int(left.sum()),
        "flip_share": float(in_D_BL[np.arange(len(t_B)), top_after][left].mean()) if left.any() else None,
        "gain": total / max(len(t_B), 1),
    }


Outcome = tuple[torch.Tensor, torch.Tensor, np.ndarray]
"""(logits before, logits after, labels) of one edit on some images."""


def outcome(steerer: Any, pool: Any, latent: int, value: float, per_latent: int, dirs: Any = None) -> Outcome | None:
    """Suppression of ``latent`` (a := value on every patch) on its own images; None where it never fires."""
    rows = own_images(pool, latent, per_latent)
    if not len(rows):
        return None
    _, after_BL = measure(steerer, pool, rows, suppress_edit(latent, value), dirs)
    return pool.logits_BL[torch.from_numpy(rows)], after_BL, pool.images.label_B[rows]


def pooled(outcomes: list[Outcome | None], diff_LL: np.ndarray) -> dict[str, Any] | None:
    """``directed`` over several edits' images at once (the random baselines, pooled)."""
    got = [o for o in outcomes if o is not None]
    if not got:
        return None
    return directed(torch.cat([o[0] for o in got]), torch.cat([o[1] for o in got]), np.concatenate([o[2] for o in got]), diff_LL)


def truth_check(steerer: Any, pool: Any, picks: list[Any], cfg: Any) -> dict[str, Any]:
    """Per part latent (the ``TRUTH_LATENTS`` most part-selective): its lift against random directions of the same
    norm on its images (pooled over draws) and against the random latents on theirs (pooled)."""
    from visae.steering.choose import choose

    factors = class_factors(steerer.dataset) if steerer.head.kind == "classifier" else None
    if factors is None:
        return {"skipped": "needs the synthetic aircraft's generating factors and its classifier"}
    max_S = steerer.max_act()
    value = lambda latent: float(cfg.scale * max_S[latent])  # noqa: E731
    randoms = [p for p in picks if p.group == "random"]
    if steerer.db is not None and cfg.latent_list() is None:  # more part latents than the suppression table shows
        taken = {p.latent for p in randoms}
        picks = [p for p in choose(steerer.db, steerer.d_sae, TRUTH_LATENTS, 0, None, cfg.seed) if p.group == "part" and p.latent not in taken]
    random_outcomes = [outcome(steerer, pool, r.latent, value(r.latent), cfg.per_latent) for r in randoms]
    rows = []
    for p in picks:
        diff = differs_LL(factors, steerer.class_names, p.part) if p.part and p.group in ("part", "chosen") else None
        own = outcome(steerer, pool, p.latent, value(p.latent), cfg.per_latent) if diff is not None else None
        if own is None:
            continue
        w_D = steerer.sae.W_dec[p.latent].detach().cpu()
        dirs = [outcome(steerer, pool, p.latent, value(p.latent), cfg.per_latent, {p.latent: d})
                for d in random_directions(w_D, cfg.directions, cfg.seed * 7 + p.latent)]  # fmt: skip
        score = directed(*own, diff)
        rows.append({"latent": p.latent, "part": p.part, "factors": PART_FACTORS.get(p.part or "", []), **score,
                     "powered": score["lift_images"] >= MIN_LIFT_IMAGES,
                     "random_direction": pooled(dirs, diff) or {}, "random_latent": pooled(random_outcomes, diff) or {}})  # fmt: skip
    return {"scale": cfg.scale, "min_lift_images": MIN_LIFT_IMAGES, "latents": rows}
