"""Apply near-duplicates to the lists of a scan: every ranking's top images keep the best entry of
each photo, every population's top patches at most ``per_image`` patches of one photo, cut to their
final length. Definitions: docs/metrics.md, "Near-duplicate images"."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from visae.analysis.dedup import Neighbours, collapse
from visae.analysis.scan import Ranked, ScanResult
from visae.analysis.units import PART_TOP, Patches


def candidate_lists(res: ScanResult) -> list[np.ndarray]:
    """Per latent the images of its candidate top images (every ranking): the lists within which
    near-duplicates are looked for. Top patches reuse what is found there (images that appear only
    in top-patch lists are not compared, which keeps the cost to the top lists)."""
    if not res.rankings:
        return []
    score_SRK = np.stack([r.score_SK for r in res.rankings.values()], 1)
    image_SRK = np.stack([r.image_SK for r in res.rankings.values()], 1)
    return [image_SRK[s][score_SRK[s] > 0] for s in range(score_SRK.shape[0])]


def _cut(a_SK: np.ndarray, keep_SX: np.ndarray, fill: Any) -> np.ndarray:
    expand = keep_SX.shape + (1,) * (a_SK.ndim - 2)
    out = np.take_along_axis(a_SK, np.maximum(keep_SX, 0).reshape(expand), 1)
    return np.where((keep_SX < 0).reshape(expand), fill, out)


def distinct_ranking(r: Ranked, near: Neighbours | None, top: int) -> Ranked:
    """The ranking's best entry of every photo, ``top`` at most per latent."""
    keep_SX, _, dups_SX, dropped_S = collapse(r.image_SK, r.score_SK > 0, top, near)
    map_SXG = None if r.map_SKG is None else _cut(r.map_SKG, keep_SX, 0.0)
    return Ranked(_cut(r.score_SK, keep_SX, 0.0), _cut(r.image_SK, keep_SX, -1), map_SXG, dups_SX, dropped_S)


def distinct_patches(p: Patches, near: Neighbours | None, per_image: int, top: int = PART_TOP) -> Patches:
    """The top patches with at most ``per_image`` of one photo, ``top`` per unit."""
    keep_CX, group_CX, _, _ = collapse(p.image_CK, p.score_CK > 0, top, near, per_group=per_image)
    return Patches(_cut(p.score_CK, keep_CX, 0.0), _cut(p.image_CK, keep_CX, -1), _cut(p.cell_CK, keep_CX, 0), group_CX)


def distinct(res: ScanResult, near: Neighbours | None, top: int, per_image: int) -> ScanResult:
    """``res`` with every list collapsed by ``near`` (None: no near-duplicates known, each image is its
    own photo) and cut to ``top`` images / PART_TOP patches."""
    units = {k: replace(u, patches=None if u.patches is None else distinct_patches(u.patches, near, per_image))
             for k, u in res.units.items()}  # fmt: skip
    rankings = {k: distinct_ranking(r, near, top) for k, r in res.rankings.items()}
    return replace(res, rankings=rankings, units=units)


def dedup_summary(res: ScanResult, near: Neighbours | None, candidates: int, why_not: str | None) -> dict[str, Any]:
    """The feature DB's ``meta.dedup``: what was compared and how much was collapsed."""
    if near is None:
        return {"reason": why_not or "not run"}
    return {
        "candidates": candidates, "images": near.n_images, "unreadable": near.unreadable,
        "pairs": sum(len(v) for v in near.of.values()) // 2, "images_with_duplicates": len(near.of),
        "dropped": {k: int(r.dropped_S.sum()) for k, r in res.rankings.items() if r.dropped_S is not None},
        "latents": {k: int((r.dropped_S > 0).sum()) for k, r in res.rankings.items() if r.dropped_S is not None},
    }
