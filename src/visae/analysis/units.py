"""What class selectivity and part purity need, for one population of C units, streamed.

The same accumulator serves the SAE's latents and both baselines (the raw channels of the
store, each sign a unit of its own, and a random-init SAE), so every population is scored by
the same code path. Per batch of whole images it folds in:

- ``class_mass_LC``: summed activation per class of the image (every analysed token counts);
- ``n_images_C``: images on which the unit is > 0 somewhere;
- ``patches``: the unit's top patches over the grid, at most ``per_image`` from any one image,
  so one image (say, adjacent cells of one aircraft) cannot fill a unit's list on its own;
- ``edge_mass_C`` / ``grid_mass_C``: summed activation on the grid's edge cells / on all its cells
  (border and position units, docs/metrics.md).

Each image's tokens arrive in one batch, so keeping only an image's best ``per_image`` patches
before offering them to the running top-k enforces the cap across the whole pass, and memory
stays O(C * K) whatever the store's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from visae.analysis.config import PART_TOP, PER_IMAGE  # noqa: F401  (re-exported; defined with the settings)
from visae.analysis.topk import TopK



@dataclass
class Patches:
    """Each unit's top patches, best first: score, image (split index) and grid cell."""

    score_CK: np.ndarray
    image_CK: np.ndarray
    cell_CK: np.ndarray
    group_CK: np.ndarray | None = None
    """Photo of each patch: patches of one image or of near-duplicate images share a value
    (visae.analysis.distinct); None: every image is its own photo."""


@dataclass
class UnitResult:
    """The finished class statistics and top patches of C units."""

    class_mass_CL: np.ndarray
    n_images_C: np.ndarray
    patches: Patches | None
    edge_mass_C: np.ndarray | None = None
    """Summed activation on the grid's edge cells (None without a grid)."""
    grid_mass_C: np.ndarray | None = None
    """Summed activation on all grid cells."""


class Units:
    """Running class mass, fired-image counts and capped top patches of C units."""

    def __init__(self, C: int, n_classes: int, grid: bool, top: int = PART_TOP, per_image: int = PER_IMAGE,
                 edge_G: torch.Tensor | None = None):  # fmt: skip
        """``top``: patch slots kept (PART_TOP plus any spare for near-duplicates); ``edge_G``: mask of the
        grid's edge cells (None: no border statistics)."""
        self.C, self.L, self.per_image = C, n_classes, per_image
        self.class_mass_LC = torch.zeros(max(n_classes, 1), C, dtype=torch.float64)
        self.n_images_C = torch.zeros(C, dtype=torch.int64)
        payload = {"image": ((), torch.int64), "cell": ((), torch.int64)}
        self.patches = TopK(C, top, payload) if grid else None
        self.edge_idx = None if edge_G is None or not grid else edge_G.nonzero(as_tuple=True)[0]
        self.edge_mass_C = torch.zeros(C, dtype=torch.float64)
        self.grid_mass_C = torch.zeros(C, dtype=torch.float64)

    def add(self, image_sum_BC: torch.Tensor, label_B: torch.Tensor, images_B: torch.Tensor,
            maps_BGC: torch.Tensor | None, max_BC: torch.Tensor | None = None) -> None:
        """One batch of B whole images: each image's summed activation (B, C) and label, and,
        with a grid, each image's activation map over its G cells (B, G, C) (``max_BC``: its
        max over the cells, when the caller has it)."""
        known = label_B >= 0
        if self.L and bool(known.any()):
            self.class_mass_LC.index_add_(0, label_B[known], image_sum_BC[known].double())
        self.n_images_C += (image_sum_BC > 0).sum(0)
        if self.patches is not None and maps_BGC is not None:
            offer_patches(self.patches, maps_BGC, images_B, self.per_image, max_BC)
        if self.edge_idx is not None and maps_BGC is not None:
            self.grid_mass_C += maps_BGC.sum((0, 1)).double()
            self.edge_mass_C += maps_BGC.index_select(1, self.edge_idx).sum((0, 1)).double()

    def finish(self) -> UnitResult:
        patches = None
        if self.patches is not None:
            score, data = self.patches.sorted()
            patches = Patches(score.numpy(), data["image"].numpy(), data["cell"].numpy())
        edges = self.edge_idx is not None
        return UnitResult(self.class_mass_LC.T[:, : self.L].numpy(), self.n_images_C.numpy(), patches,
                          self.edge_mass_C.numpy() if edges else None, self.grid_mass_C.numpy() if edges else None)


def edge_cells(grid_H: int, grid_W: int) -> torch.Tensor:
    """(G,) mask of the grid's outer ring of cells (row 0, row H-1, column 0, column W-1)."""
    y, x = torch.meshgrid(torch.arange(grid_H), torch.arange(grid_W), indexing="ij")
    return ((y == 0) | (y == grid_H - 1) | (x == 0) | (x == grid_W - 1)).flatten()


def offer_patches(top: TopK, maps_BGC: torch.Tensor, images_B: torch.Tensor, per_image: int,
                  max_BC: torch.Tensor | None = None) -> None:  # fmt: skip
    """Offer every image's ``per_image`` best cells of each unit to the running top patches.

    An image whose best cell does not beat a unit's current worst top patch cannot enter it,
    so only the (image, unit) pairs that can are searched (``max_BC``: each image's best cell).
    """
    B, G, C = maps_BGC.shape
    if B == 0:
        return
    k = min(per_image, G)
    max_BC = maps_BGC.amax(1) if max_BC is None else max_BC
    b_P, c_P = (max_BC > top.score_SK.min(dim=1).values).nonzero(as_tuple=True)
    if len(b_P) == 0:
        return
    best_Pk, cell_Pk = maps_BGC[b_P, :, c_P].topk(k, dim=1)  # (P, G): the candidate pairs' maps
    score_BkC = torch.full((B, k, C), float("-inf"))
    cell_BkC = torch.zeros((B, k, C), dtype=torch.int64)
    score_BkC[b_P, :, c_P], cell_BkC[b_P, :, c_P] = best_Pk, cell_Pk
    cell_XC = cell_BkC.view(B * k, C)
    top.update(score_BkC.view(B * k, C), lambda x, c: {"image": images_B[x // k], "cell": cell_XC[x, c]})
