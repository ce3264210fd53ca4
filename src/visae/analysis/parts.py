"""Ground-truth part overlap: which annotated part a latent's top patches fall on.

A token-grid cell covers a block of the preprocessed (resized, centre-cropped) image. The
part of a cell is the majority part label of those pixels, found by resizing the part map
with the same geometry as the image (``Preprocess.geometry``, nearest neighbour) and
counting labels per cell. A unit's part is the most common part among its top patches
(at most ``PER_IMAGE`` from any one image), and its share is how many of them fall there;
it is part-pure when that share is high *and* the patches come from enough distinct images
(docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from visae.analysis.config import MIN_IMAGES  # noqa: F401  (re-exported; defined with the settings)
from visae.data.transforms import Preprocess

PURE_SHARE = 0.8
"""A unit is part-pure when at least this share of its top patches fall on one (non-background) part."""


def cell_parts(parts_HW: np.ndarray, pre: Preprocess, grid_H: int, grid_W: int) -> np.ndarray:
    """Majority part label of each grid cell of the preprocessed image, shape (grid_H * grid_W,)."""
    h, w = parts_HW.shape
    rh, rw, top, left = pre.geometry(h, w)
    resized = np.asarray(Image.fromarray(parts_HW.astype(np.uint8)).resize((rw, rh), Image.NEAREST))
    view_HW = resized[top : top + pre.size, left : left + pre.size]
    rows = np.minimum(np.arange(view_HW.shape[0]) * grid_H // view_HW.shape[0], grid_H - 1)
    cols = np.minimum(np.arange(view_HW.shape[1]) * grid_W // view_HW.shape[1], grid_W - 1)
    cell_HW = rows[:, None] * grid_W + cols[None, :]
    n_parts = int(view_HW.max()) + 1
    counts_GP = np.bincount((cell_HW * n_parts + view_HW).ravel(), minlength=grid_H * grid_W * n_parts)
    return counts_GP.reshape(grid_H * grid_W, n_parts).argmax(1).astype(np.int64)


def top_patch_parts(
    image_SK: np.ndarray,
    cell_SK: np.ndarray,
    valid_SK: np.ndarray,
    parts_of_image: Callable[[int], np.ndarray | None],
) -> np.ndarray:
    """Part label of every top patch (-1 where invalid or the image has no part map)."""
    part_SK = np.full(image_SK.shape, -1, dtype=np.int64)
    cache: dict[int, np.ndarray | None] = {}
    for s, k in zip(*np.nonzero(valid_SK)):
        img = int(image_SK[s, k])
        if img not in cache:
            cache[img] = parts_of_image(img)
        cells = cache[img]
        if cells is not None:
            part_SK[s, k] = cells[cell_SK[s, k]]
    return part_SK


def dominant_part(part_SK: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(part_S, share_S): the most common part among each latent's top patches (background
    included) and its share of all K slots; latents without any labelled patch get part -1."""
    S, K = part_SK.shape
    n_parts = max(int(part_SK.max()) + 1, 1)
    counts_SP = np.zeros((S, n_parts), dtype=np.int64)
    s_idx, k_idx = np.nonzero(part_SK >= 0)
    np.add.at(counts_SP, (s_idx, part_SK[s_idx, k_idx]), 1)
    part_S = counts_SP.argmax(1)
    share_S = counts_SP[np.arange(S), part_S] / K
    part_S = np.where(counts_SP.sum(1) > 0, part_S, -1)
    return part_S, share_S


def distinct_images(image_CK: np.ndarray, valid_CK: np.ndarray) -> np.ndarray:
    """Number of distinct images among each unit's valid top patches."""
    return np.array([len(np.unique(image_CK[c][valid_CK[c]])) for c in range(image_CK.shape[0])], dtype=np.int64)


def part_pure(part_C: np.ndarray, share_C: np.ndarray, n_images_C: np.ndarray, min_images: int = MIN_IMAGES,
              threshold: float = PURE_SHARE) -> np.ndarray:
    """Units whose top patches fall >= threshold on one part other than background (0), drawn
    from at least ``min_images`` distinct images."""
    return (part_C > 0) & (share_C >= threshold) & (np.asarray(n_images_C) >= min_images)
