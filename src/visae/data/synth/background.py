"""Backgrounds for a whole chunk at once, vectorised in numpy.

Four kinds: ``sky`` (vertical gradient, a few clouds), ``cloudy`` (heavy cloud cover),
``horizon`` (sky over ground, the horizon tilted) and ``terrain`` (a top-down patchwork
of fields, thin clouds). Clouds are smooth value noise: a coarse random grid upsampled
by separable linear interpolation (``U_SG @ grid_GG @ U_SG.T``), thresholded softly.
"""

from __future__ import annotations

import numpy as np

BACKGROUNDS = ["sky", "cloudy", "horizon", "terrain"]

FIELD_COLOURS = np.array(
    [[86, 125, 60], [110, 140, 70], [150, 160, 90], [170, 150, 100], [120, 100, 70], [95, 115, 85], [190, 175, 120]],
    dtype=np.float32,
)


def _upsampler(n_grid: int, size: int) -> np.ndarray:
    """(size, n_grid) matrix of linear-interpolation weights from a grid to pixels."""
    pos = np.linspace(0, n_grid - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), n_grid - 2)
    frac = pos - lo
    U = np.zeros((size, n_grid), dtype=np.float32)
    U[np.arange(size), lo] = 1 - frac
    U[np.arange(size), lo + 1] = frac
    return U


def smooth_noise(rng: np.random.Generator, n: int, size: int, grids: tuple[int, ...] = (5, 11)) -> np.ndarray:
    """(n, size, size) value noise in about [0, 1]: octaves of upsampled random grids."""
    out = np.zeros((n, size, size), dtype=np.float32)
    weight = 1.0
    for g in grids:
        U = _upsampler(g, size)
        grid = rng.random((n, g, g), dtype=np.float32)
        out += weight * (U @ grid @ U.T)
        weight *= 0.45
    return out / sum(0.45**i for i in range(len(grids)))


COVER = {
    "hard": {"sky": (0.0, 0.35), "cloudy": (0.45, 0.75), "horizon": (0.0, 0.3), "terrain": (0.0, 0.25)},
    "easy": {"sky": (0.0, 0.25), "cloudy": (0.3, 0.5), "horizon": (0.0, 0.2), "terrain": (0.0, 0.15)},
}
"""Cloud cover range of each background kind, per difficulty."""


def sample_background(rng: np.random.Generator, difficulty: str = "easy") -> dict:
    """The per-image background factors (recorded in the manifest)."""
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    top = np.array([60, 110, 190]) + rng.integers(-30, 31, 3)
    bottom = np.array([175, 205, 235]) + rng.integers(-25, 26, 3)
    cover = COVER[difficulty][kind]
    return {
        "background": kind,
        "sky_top": [int(c) for c in np.clip(top, 0, 255)],
        "sky_bottom": [int(c) for c in np.clip(bottom, 0, 255)],
        "cloud_cover": round(float(rng.uniform(*cover)), 3),
        "horizon": round(float(rng.uniform(0.45, 0.9)), 3),
        "horizon_tilt": round(float(rng.uniform(-0.3, 0.3)), 3),
        "ground": [int(c) for c in FIELD_COLOURS[rng.integers(len(FIELD_COLOURS))] + rng.integers(-15, 16, 3)],
    }


def render_backgrounds(rng: np.random.Generator, factors: list[dict], size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 backgrounds for the images described by ``factors``."""
    n = len(factors)
    y_H = np.linspace(0, 1, size, dtype=np.float32)
    x_W = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    top = np.array([f["sky_top"] for f in factors], dtype=np.float32)[:, None, None, :]
    bottom = np.array([f["sky_bottom"] for f in factors], dtype=np.float32)[:, None, None, :]
    t = y_H[None, :, None, None] ** 0.8
    img = top + (bottom - top) * t  # (n, H, 1, 3)
    img = np.broadcast_to(img, (n, size, size, 3)).copy()

    # Ground: below a tilted horizon line, textured.
    kind = np.array([f["background"] for f in factors])
    texture = smooth_noise(rng, n, size, grids=(9, 23))
    ground = np.array([f["ground"] for f in factors], dtype=np.float32)[:, None, None, :]
    ground = ground * (0.8 + 0.4 * texture[..., None])
    h = np.array([f["horizon"] for f in factors], dtype=np.float32)[:, None, None]
    tilt = np.array([f["horizon_tilt"] for f in factors], dtype=np.float32)[:, None, None]
    below = (y_H[None, :, None] > h + tilt * x_W[None, None, :]) & (kind == "horizon")[:, None, None]
    img = np.where(below[..., None], ground, img)

    # Terrain: patchwork of fields seen from above.
    terr = np.flatnonzero(kind == "terrain")
    if len(terr):
        g = 5
        cell = rng.integers(len(FIELD_COLOURS), size=(len(terr), g, g))
        idx = (np.arange(size) * g) // size
        fields = FIELD_COLOURS[cell[:, idx][:, :, idx]]  # (t, H, W, 3)
        img[terr] = fields * (0.85 + 0.3 * texture[terr, ..., None])

    # Clouds over everything.
    cover = np.array([f["cloud_cover"] for f in factors], dtype=np.float32)[:, None, None]
    alpha = np.clip((smooth_noise(rng, n, size) - (1 - cover)) * 4.0, 0, 0.95)[..., None]
    img = img * (1 - alpha) + np.float32(245) * alpha
    return np.clip(img, 0, 255).astype(np.uint8)
