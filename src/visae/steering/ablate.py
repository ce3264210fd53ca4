"""Input-space ablation: blur or grey out the image regions where a latent fires, against random regions.

For latent i and image b with activation map a_bg over the layer's G = H·W grid cells (row-major):

    fired cells   F_b = {g : a_bg ≥ τ · max_g a_bg}       (τ = threshold ∈ (0, 1]; images with max a_bg = 0 skipped)
    control d     R_bd ⊂ {0..G−1}, |R_bd| = |F_b|, uniform without replacement (seeded; d = 1..draws)

A pixel (r, c) of the S × S normalised input belongs to cell (⌊r·H/S⌋, ⌊c·W/S⌋). Ablating a set of cells
replaces the pixels of those cells: ``grey`` sets them to 0 (the dataset mean in the normalised input);
``blur`` gives them the values of a separable Gaussian blur of the whole image (σ pixels, reflect padding;
default σ = cell side / 2). Each ablation's effect on the classifier is measured with ``visae.steering.effects``
(margin m = ℓ_t − max_{c≠t} ℓ_c, flips, KL); the latent's own activation is re-read after each ablation:

    own drop_b = (max_g a_bg − max_g a'_bg) / max_g a_bg         (1: silenced, 0: untouched, < 0: raised)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from visae.atomic import write_with
from visae.errors import VisaeError
from visae.progress import info
from visae.steering.effects import effects

MODES = ("blur", "grey")
CHUNK = 16
"""Images per re-encode when re-reading the latent's activation after an ablation."""


# --- masks and pixel operations ----------------------------------------------------------------------


def _cell_index(grid: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """(height, width) long: the row-major grid cell of each pixel (cell (⌊r·H/height⌋, ⌊c·W/width⌋))."""
    H, W = grid
    rows = torch.arange(height) * H // height
    cols = torch.arange(width) * W // width
    return rows[:, None] * W + cols[None, :]


def cell_mask(cells_G: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """(size, size) bool: the pixels of the model input under the chosen cells of an H × W grid."""
    cells_G = torch.as_tensor(cells_G, dtype=torch.bool)
    if cells_G.numel() != grid[0] * grid[1]:
        raise VisaeError(f"{cells_G.numel()} cells given for a {grid[0]}x{grid[1]} grid", "pass one flag per grid cell")
    return cells_G.reshape(-1)[_cell_index(grid, size, size)]


def gaussian_blur(pixels_BCHW: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel, kernel radius ⌈3σ⌉ (at most the image side − 1), reflect padding."""
    if not sigma > 0 or not math.isfinite(sigma):
        raise VisaeError(f"blur sigma {sigma} is not a positive number", "pass a sigma above 0 (pixels)")
    B, C, Hp, Wp = pixels_BCHW.shape
    x = pixels_BCHW.float()
    r = int(min(math.ceil(3 * sigma), Hp - 1, Wp - 1))
    if r < 1:
        return pixels_BCHW.clone()
    k_K = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    k_K = (k_K / k_K.sum()).float()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k_K.view(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k_K.view(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)
    return x.to(pixels_BCHW.dtype)


def ablate_cells(pixels_BCHW: torch.Tensor, cells_BG: torch.Tensor, grid: tuple[int, int], mode: str = "blur",
                 sigma: float | None = None) -> torch.Tensor:  # fmt: skip
    """A copy of the images with the pixels under each image's chosen cells blurred or set to 0 (grey)."""
    _check_mode(mode)
    B, C, Hp, Wp = pixels_BCHW.shape
    cells_BG = torch.as_tensor(cells_BG, dtype=torch.bool)
    if cells_BG.shape != (B, grid[0] * grid[1]):
        raise VisaeError(f"cells of shape {tuple(cells_BG.shape)} for {B} images on a {grid[0]}x{grid[1]} grid",
                         "pass one row of grid-cell flags per image")  # fmt: skip
    mask_B1HW = cells_BG[:, _cell_index(grid, Hp, Wp)][:, None]
    if mode == "grey":
        fill = torch.zeros((), dtype=pixels_BCHW.dtype)
    else:
        fill = gaussian_blur(pixels_BCHW, default_sigma(grid, Hp) if sigma is None else sigma)
    return torch.where(mask_B1HW, fill, pixels_BCHW)


def default_sigma(grid: tuple[int, int], size: int) -> float:
    """Half the side of a grid cell, in pixels (the shorter side where cells are not square)."""
    return min(size / grid[0], size / grid[1]) / 2


# --- cells of the latent and of the control ----------------------------------------------------------


def latent_cells(act_BG: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cells_BG, fires_B): the cells at or above ``threshold`` × the image's max, and whether the image fires."""
    max_B = act_BG.amax(1)
    fires_B = max_B > 0
    return (act_BG >= threshold * max_B[:, None]) & fires_B[:, None], fires_B


def control_cells(n_B: torch.Tensor, n_cells: int, draws: int, seed: int = 0) -> torch.Tensor:
    """(draws, B, G) bool: per draw and image, ``n_B[b]`` cells drawn uniformly without replacement."""
    rng = np.random.default_rng(seed)
    rank_DBG = rng.random((draws, len(n_B), n_cells)).argsort(-1).argsort(-1)
    return torch.from_numpy(rank_DBG < np.asarray(n_B)[None, :, None])


# --- the evaluation ----------------------------------------------------------------------------------


def ablation_eval(steerer: Any, latent: int, images: Any, codes_BGS: torch.Tensor, *, mode: str = "blur",
                  threshold: float = 0.5, draws: int = 5, sigma: float | None = None, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The latent's ablation against ``draws`` random-cell controls on ``images`` (JSON-ready; module docstring)."""
    grid = _check_args(steerer, latent, images, codes_BGS, mode, threshold, draws, sigma)
    cells_BG, fires_B = latent_cells(codes_BGS[:, :, latent].float(), threshold)
    rows = torch.nonzero(fires_B)[:, 0]
    if mode == "blur" and sigma is None:
        sigma = default_sigma(grid, images.pixels_BCHW.shape[-2])
    out: dict[str, Any] = {"latent_index": latent, "mode": mode, "threshold": threshold, "draws": draws, "seed": seed,
                           "sigma": sigma if mode == "blur" else None, "images": len(rows), "skipped": len(images) - len(rows)}  # fmt: skip
    if not len(rows):
        return out | {"cells_mean": None, "latent": None, "control": None, "margin_drop": None,
                      "own_activation": None, "per_image": []}  # fmt: skip
    imgs, cells_BG = images.subset(rows.numpy()), cells_BG[rows]
    n_B = cells_BG.sum(1)
    own_B = codes_BGS[rows, :, latent].float().amax(1)
    before_BL = steerer.logits(imgs.pixels_BCHW)
    measure = lambda c_BG: _measure(steerer, latent, imgs, c_BG, grid, mode, sigma, before_BL, own_B)  # noqa: E731
    eff, drop_B = measure(cells_BG)
    ctl = [measure(c_BG) for c_BG in control_cells(n_B.numpy(), cells_BG.shape[1], draws, seed)]
    ctl_sums = [e.summary() for e, _ in ctl]
    ctl_after_B = np.mean([e.margin_after_B for e, _ in ctl], axis=0)
    ctl_drop_B = np.mean([d for _, d in ctl], axis=0)
    return out | {
        "cells_mean": float(n_B.float().mean()),
        "latent": eff.summary(),
        "control": _mean_summary(ctl_sums),
        "margin_drop": _margin_drop(eff.summary()["margin_change"], [c["margin_change"] for c in ctl_sums]),
        "own_activation": {"latent": float(drop_B.mean()), "control": float(ctl_drop_B.mean()),
                           "before_mean": float(own_B.mean())},
        "per_image": [{"id": imgs.ids[b], "label": int(imgs.label_B[b]), "cells": int(n_B[b]),
                       "margin_before": _num(eff.margin_before_B[b]), "margin_after": _num(eff.margin_after_B[b]),
                       "control_margin_after": _num(ctl_after_B[b]), "flip": bool(eff.flip_B[b]),
                       "own_drop": _num(drop_B[b]), "control_own_drop": _num(ctl_drop_B[b])} for b in range(len(imgs))],
    }  # fmt: skip


def _margin_drop(latent: float | None, draws: list[float | None]) -> dict[str, Any]:
    """Mean true-class margin change of the latent's ablation and of the control (mean, std, each draw)."""
    control = _nanmean(draws)
    diff = None if latent is None or control is None else latent - control
    return {"latent": latent, "control": control, "control_std": _nanstd(draws), "control_draws": draws, "difference": diff}


def _measure(steerer: Any, latent: int, imgs: Any, cells_BG: torch.Tensor, grid: tuple[int, int], mode: str,
             sigma: float | None, before_BL: torch.Tensor, own_B: torch.Tensor) -> tuple[Any, np.ndarray]:  # fmt: skip
    """Effects of one ablation on the classifier, and the relative drop of the latent's max per image."""
    ablated_BCHW = ablate_cells(imgs.pixels_BCHW, cells_BG, grid, mode, sigma)
    eff = effects(before_BL, steerer.logits(ablated_BCHW), imgs.label_B, steerer.class_names, _hierarchy(steerer))
    after_B = torch.cat([steerer.patch_codes(steerer.layer_tokens(ablated_BCHW[a : a + CHUNK]))[:, :, latent].float().amax(1)
                         for a in range(0, len(ablated_BCHW), CHUNK)])  # fmt: skip
    return eff, ((own_B - after_B) / own_B).double().numpy()


def _hierarchy(steerer: Any) -> Any:
    try:
        return getattr(steerer.dataset, "hierarchy", None)
    except VisaeError:
        return None


def _mean_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Key-wise mean of effect summaries over the control draws (None where no draw has a number)."""
    return {k: summaries[0][k] if k == "images" else _nanmean([s.get(k) for s in summaries]) for k in summaries[0]}


def _nanmean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _nanstd(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.std(vals)) if vals else None


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise VisaeError(f"unknown ablation mode '{mode}'", "use --mode blur or --mode grey")


def _check_args(steerer: Any, latent: int, images: Any, codes_BGS: torch.Tensor, mode: str, threshold: float,
                draws: int, sigma: float | None) -> tuple[int, int]:  # fmt: skip
    _check_mode(mode)
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise VisaeError(f"threshold {threshold} is outside (0, 1]", "pass a share of the latent's max on each image, e.g. 0.5")
    if not (isinstance(draws, int) and draws >= 1):
        raise VisaeError(f"{draws} control draws", "pass at least 1 draw (the default is 5)")
    if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
        raise VisaeError(f"blur sigma {sigma} is not a positive number", "pass a sigma above 0 (pixels), or none for half a cell")
    grid = steerer.grid
    if grid is None:
        raise VisaeError("the run's layer has no spatial grid (its tokens are pooled)",
                         "ablation needs a grid of cells: use an SAE of a spatial layer")  # fmt: skip
    B, G, S = codes_BGS.shape
    if B != len(images) or G != grid[0] * grid[1]:
        raise VisaeError(f"codes of shape {tuple(codes_BGS.shape)} for {len(images)} images on a {grid[0]}x{grid[1]} grid",
                         "pass steerer.patch_codes(steerer.layer_tokens(images.pixels_BCHW))")  # fmt: skip
    if not 0 <= latent < S:
        raise VisaeError(f"latent {latent} is out of range: the SAE has {S} latents", f"pick latents 0..{S - 1}")
    return grid


# --- figures -----------------------------------------------------------------------------------------


def plot_ablation(results: list[dict[str, Any]], path: Path) -> None:
    """Bar chart: per latent, the mean true-class margin change of its ablation and of the control
    (bar = mean over draws, error bar = std over draws, dots = the draws). Skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        info("ablation plot skipped: matplotlib is not installed (pip install 'visae[plots]')")
        return
    rows = [r for r in results if r.get("margin_drop") and r["margin_drop"]["latent"] is not None]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.4))
    x = np.arange(len(rows))
    md = [r["margin_drop"] for r in rows]
    ax.bar(x - 0.2, [m["latent"] for m in md], 0.4, label="latent's cells", color="#c0392b")
    ax.bar(x + 0.2, [m["control"] or 0.0 for m in md], 0.4, yerr=[m["control_std"] or 0.0 for m in md],
           capsize=3, label="random cells (control)", color="#95a5a6")  # fmt: skip
    for i, m in enumerate(md):
        draws = [d for d in m["control_draws"] if d is not None]
        ax.plot([i + 0.2] * len(draws), draws, "k.", ms=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [str(r.get("latent_index", i)) for i, r in enumerate(rows)])
    ax.set_xlabel("latent")
    mode = rows[0]["mode"] if rows else ""
    ax.set_ylabel(f"mean true-class margin change ({mode})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def ablation_figure(pixels_BCHW: torch.Tensor, ablated_BCHW: torch.Tensor, preprocess: Any, path: Path, n: int = 8) -> None:
    """PNG strip of the first ``n`` images: originals on the top row, ablated below (un-normalised)."""
    from PIL import Image

    def rgb(x_BCHW: torch.Tensor) -> np.ndarray:
        mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, -1, 1, 1)
        x = (x_BCHW[:n].float() * std + mean).clamp(0, 1)
        return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)

    top, bottom = rgb(pixels_BCHW), rgb(ablated_BCHW)
    if not len(top):
        raise VisaeError("no images to draw", "pass at least one image")
    gap = np.full((top.shape[1], 2, 3), 255, dtype=np.uint8)
    row = lambda imgs: np.concatenate([p for im in imgs for p in (im, gap)][:-1], axis=1)  # noqa: E731
    strip = np.concatenate([row(top), np.full((2, row(top).shape[1], 3), 255, np.uint8), row(bottom)], axis=0)
    write_with(path, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))
