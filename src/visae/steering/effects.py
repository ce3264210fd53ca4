"""What an edit did to a classifier's outputs: per image, and as rates over a set of images.

With logits before (ℓ) and after (ℓ') and the true class t of each image (docs/steering.md):

    margin      m = ℓ_t − max_{c≠t} ℓ_c            (> 0: the true class wins)
    confidence  p_t = softmax(ℓ)_t
    flip        argmax ℓ' ≠ argmax ℓ
    KL          KL(softmax ℓ ‖ softmax ℓ') = Σ_c p_c (log p_c − log p'_c)

Where the dataset has a hierarchy, each flip is sorted by the lowest level the old and new top-1
classes share: within the family (same family, other variant), within the manufacturer (other
family) or across manufacturers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visae.data.base import Hierarchy


@dataclass
class Effects:
    """Per-image outputs before and after one edit."""

    labels_B: np.ndarray
    top1_before_B: np.ndarray
    top1_after_B: np.ndarray
    margin_before_B: np.ndarray
    margin_after_B: np.ndarray
    conf_before_B: np.ndarray
    conf_after_B: np.ndarray
    kl_B: np.ndarray
    flip_level_B: np.ndarray | None = None
    """Per flip, the hierarchy level index the old and new classes first share (0 = none below the root,
    1 = the first level above the leaf, ...); -1 where there is no flip. None without a hierarchy."""
    levels: list[str] | None = None

    @property
    def flip_B(self) -> np.ndarray:
        return self.top1_before_B != self.top1_after_B

    def summary(self) -> dict[str, Any]:
        """Rates and means over the images (labelled images for margin, confidence and accuracy)."""
        n = len(self.labels_B)
        lab = self.labels_B >= 0
        out: dict[str, Any] = {
            "images": n,
            "flip_rate": _mean(self.flip_B),
            "kl": _mean(self.kl_B),
            "top1_before": _mean((self.top1_before_B == self.labels_B)[lab]),
            "top1_after": _mean((self.top1_after_B == self.labels_B)[lab]),
            "margin_before": _mean(self.margin_before_B[lab]),
            "margin_after": _mean(self.margin_after_B[lab]),
            "margin_change": _mean((self.margin_after_B - self.margin_before_B)[lab]),
            "confidence_before": _mean(self.conf_before_B[lab]),
            "confidence_after": _mean(self.conf_after_B[lab]),
        }
        if self.flip_level_B is not None and self.levels:
            flips = self.flip_level_B[self.flip_level_B >= 0]
            for j, name in enumerate(flip_kinds(self.levels)):
                out[f"flips_{name}"] = _mean(flips == j) if len(flips) else None
        return out


def flip_kinds(levels: list[str]) -> list[str]:
    """Names of the flip kinds of a hierarchy: within_<level> for each level above the leaf, then across_<top>."""
    return [f"within_{lv}" for lv in levels[1:]] + [f"across_{levels[-1]}"]


def _mean(a: np.ndarray) -> float | None:
    a = np.asarray(a, dtype=np.float64)
    return float(a.mean()) if a.size else None


def margin(logits_BL: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
    """ℓ_t − max_{c≠t} ℓ_c per image (NaN where the label is -1)."""
    t_B = labels_B.clamp_min(0)
    true_B = logits_BL.gather(1, t_B[:, None])[:, 0]
    others_BL = logits_BL.scatter(1, t_B[:, None], float("-inf"))
    m_B = true_B - others_BL.max(1).values
    return torch.where(labels_B >= 0, m_B, torch.full_like(m_B, float("nan")))


def effects(before_BL: torch.Tensor, after_BL: torch.Tensor, labels_B: np.ndarray, class_names: list[str] | None = None,
            hierarchy: Hierarchy | None = None) -> Effects:  # fmt: skip
    """The measures of the module docstring for logits before and after an edit."""
    before_BL, after_BL = before_BL.double(), after_BL.double()
    lab_B = torch.as_tensor(np.asarray(labels_B), dtype=torch.long)
    logp_BL, logq_BL = before_BL.log_softmax(1), after_BL.log_softmax(1)
    kl_B = (logp_BL.exp() * (logp_BL - logq_BL)).sum(1)
    t_B = lab_B.clamp_min(0)[:, None]
    conf = lambda lp: torch.where(lab_B >= 0, lp.gather(1, t_B)[:, 0].exp(), torch.tensor(float("nan"), dtype=lp.dtype))  # noqa: E731
    top_b, top_a = before_BL.argmax(1).numpy(), after_BL.argmax(1).numpy()
    eff = Effects(np.asarray(labels_B), top_b, top_a, margin(before_BL, lab_B).numpy(), margin(after_BL, lab_B).numpy(),
                  conf(logp_BL).numpy(), conf(logq_BL).numpy(), kl_B.clamp_min(0).numpy())  # fmt: skip
    if hierarchy is not None and class_names:
        eff.levels = list(hierarchy.levels)
        eff.flip_level_B = np.array([shared_level(hierarchy, class_names[a], class_names[b]) if a != b else -1
                                     for a, b in zip(top_b, top_a)], dtype=np.int64)  # fmt: skip
    return eff


def shared_level(hierarchy: Hierarchy, a: str, b: str) -> int:
    """Index into ``flip_kinds``: 0 when ``a`` and ``b`` share the first level above the leaf, ...,
    len(levels) - 1 when they share no level (across the top)."""
    for j, level in enumerate(hierarchy.levels[1:]):
        try:
            if hierarchy.ancestor(a, level) == hierarchy.ancestor(b, level):
                return j
        except KeyError:
            break
    return len(hierarchy.levels) - 1


def top_classes(logits_L: torch.Tensor, class_names: list[str], n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` most probable classes of one image with their probabilities."""
    p_L = logits_L.double().softmax(0)
    vals, idx = p_L.topk(min(n, len(p_L)))
    return [(class_names[int(i)] if int(i) < len(class_names) else str(int(i)), float(v)) for v, i in zip(vals, idx)]
