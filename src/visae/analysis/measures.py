"""Class selectivity, part purity and border/position units of every population of a scan (SAE,
raw channels, random-init SAE), each scored by the same functions; definitions in docs/metrics.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from visae.analysis import parts as P
from visae.analysis.baselines import measure
from visae.analysis.inputs import Images, Layout
from visae.analysis.scan import ScanResult
from visae.analysis.stats import Selectivity, class_selectivity, selective
from visae.analysis.units import UnitResult


@dataclass
class UnitScores:
    """What the measures say about each of C units of one population."""

    sel: Selectivity
    n_images_C: np.ndarray
    """Images on which the unit fired."""
    selective_C: np.ndarray
    part_CK: np.ndarray | None = None
    """Ground-truth part of each top patch (-1: no patch, or no part map)."""
    part_C: np.ndarray | None = None
    part_share_C: np.ndarray | None = None
    part_images_C: np.ndarray | None = None
    """Distinct images (near-duplicate groups) among the unit's top patches."""
    pure_C: np.ndarray | None = None
    edge_share_C: np.ndarray | None = None
    """Share of the unit's grid activation on the grid's edge cells (None without interior cells)."""
    edge_ratio_C: np.ndarray | None = None
    """Mean activation per edge cell over mean per interior cell."""
    border_C: np.ndarray | None = None
    """Border/position units: edge_ratio >= BORDER_RATIO and fired on >= min_images images."""


BORDER_RATIO = 4.0
"""A unit whose mean activation per edge cell of the grid is at least this many times its mean per
interior cell, over all analysed images, is a border/position unit (padding, position, frame)."""


def border(u: UnitResult, grid: tuple[int, int], min_images: int,
           ratio: float = BORDER_RATIO) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """(edge share, edge ratio, border) of each unit, or None for a grid without interior cells."""
    H, W = grid
    n_edge = 2 * (H + W) - 4
    n_inner = H * W - n_edge
    if u.edge_mass_C is None or u.grid_mass_C is None or H < 3 or W < 3:
        return None
    edge, total = u.edge_mass_C, u.grid_mass_C
    inner = np.maximum(total - edge, 0.0)
    share = np.divide(edge, total, out=np.zeros_like(edge), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(total > 0, (edge / n_edge) / (inner / n_inner), 0.0)
    return share, r, (r >= ratio) & (np.asarray(u.n_images_C) >= min_images)


def cell_parts_of(images: Images, layout: Layout) -> Callable[[int], np.ndarray | None]:
    """Part label of every grid cell of an image (cached: each image is decoded once)."""
    cache: dict[int, np.ndarray | None] = {}

    def cells(image: int) -> np.ndarray | None:
        if image not in cache:
            s = images.sample(image)
            cache[image] = None if s is None or s.parts_HW is None else P.cell_parts(
                s.parts_HW, images.preprocess, layout.grid_H, layout.grid_W)
        return cache[image]

    return cells


def score_units(u: UnitResult, class_tokens_L: np.ndarray, min_images: int,
                cells: Callable[[int], np.ndarray | None] | None, grid: tuple[int, int] = (1, 1)) -> UnitScores:  # fmt: skip
    """Class selectivity, border/position units and (given ``cells``) part purity of one population."""
    sel = class_selectivity(u.class_mass_CL, class_tokens_L)
    out = UnitScores(sel, u.n_images_C, selective(sel, u.n_images_C, min_images))
    if cells is not None and u.patches is not None:
        p = u.patches
        valid_CK = p.score_CK > 0
        out.part_CK = P.top_patch_parts(p.image_CK, p.cell_CK, valid_CK, cells)
        out.part_C, out.part_share_C = P.dominant_part(out.part_CK)
        out.part_images_C = P.distinct_images(p.image_CK if p.group_CK is None else p.group_CK, valid_CK)
        out.pure_C = P.part_pure(out.part_C, out.part_share_C, out.part_images_C, min_images)
    edges = border(u, grid, min_images)
    if edges is not None:
        out.edge_share_C, out.edge_ratio_C, out.border_C = edges
    return out


def score_scan(res: ScanResult, images: Images, layout: Layout, min_images: int) -> dict[str, UnitScores]:
    """Scores of every population the scan measured."""
    parts = bool(images.part_names) and layout.has_grid
    cells = cell_parts_of(images, layout) if parts else None
    return {k: score_units(u, res.class_tokens_L, min_images, cells, layout.map_grid) for k, u in res.units.items()}


def summarise(scores: dict[str, UnitScores], n_parts: int, min_images: int, why_not: dict[str, str]) -> dict[str, Any]:
    """Summary entries 'class_selective', 'part_pure' and 'border' (None where not measurable): the
    fraction of every population (and, for class selectivity, the median index of the units seen on at
    least ``min_images`` images)."""
    sel = measure({k: s.selective_C for k, s in scores.items()}, why_not)
    for k, s in scores.items():  # a threshold-free companion: the typical unit's index
        seen = s.sel.index_C[s.n_images_C >= min_images]
        sel[k]["median_index"] = float(np.median(seen)) if len(seen) else None
    edge = None
    if all(s.border_C is not None for s in scores.values()):
        edge = measure({k: s.border_C for k, s in scores.items()}, why_not)
    if any(s.pure_C is None for s in scores.values()):
        return {"class_selective": sel, "part_pure": None, "border": edge}
    pure = measure({k: s.pure_C for k, s in scores.items()}, why_not)
    for k, s in scores.items():
        pure[k]["by_part"] = np.bincount(s.part_C[s.pure_C], minlength=n_parts)[:n_parts].tolist()
    return {"class_selective": sel, "part_pure": pure, "border": edge}
