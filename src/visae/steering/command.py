"""``visae steer`` and ``visae ablate``: one edit (or one ablation) on chosen images, before and after.

``steer(cfg)`` edits latents on some images of the store's split and returns, per image, the top
classes with their probabilities before and after, the true-class margin, whether the top-1 flipped
and KL(before ‖ after); it writes one PNG per image: the edited latents' maps before and after.
``ablate(cfg)`` blurs or greys out a latent's cells against random cells (``visae.steering.ablate``).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from visae.errors import VisaeError
from visae.steering.config import AblateConfig, SteerConfig, parse_amount
from visae.steering.edit import Edit, LatentOp
from visae.steering.effects import effects, top_classes
from visae.steering.session import Steerer
from visae.steering.splice import edited_codes
from visae.steering.suppress import Pool, own_images

STEER_DIR = "steer"


def build_edit(cfg: SteerConfig, steerer: Steerer) -> Edit:
    """The edit the flags describe (relative amounts in units of each latent's max activation)."""
    steerer.check_latents(cfg.latent)
    op = next(k for k in ("scale", "set", "add") if getattr(cfg, k) is not None)
    value, relative = parse_amount(getattr(cfg, op))
    if relative and op == "scale":
        raise VisaeError("--scale is already a factor: '2x' means nothing more than 2", "write --scale 2 (or --set 2x)")
    where, cells = _where(cfg.where)
    max_S = steerer.max_act() if relative else None
    ops = []
    for latent in cfg.latent:
        amount = value * float(max_S[latent]) if max_S is not None else value
        kw: dict[str, Any] = {"where": where, "cells": cells} if where == "cells" else {"where": where}
        ops.append(LatentOp(latents=[latent], op=op, value=amount, **kw))
    edit = Edit(ops=ops)
    steerer.splice(edit)  # refuses cells outside the grid, cls without a CLS token, ... before any work
    return edit


def _where(items: list[str]) -> tuple[str, list[tuple[int, int]] | None]:
    named = [w for w in items if w in ("all", "active", "cls")]
    cells = [w for w in items if w not in ("all", "active", "cls")]
    if named and cells or len(named) > 1:
        raise VisaeError(f"--where {' '.join(items)} mixes token selections", "give one of all, active, cls, or one or more cells Y,X")
    if named:
        return named[0], None
    out = []
    for c in cells:
        parts = c.split(",")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise VisaeError(f"--where '{c}' is not all, active, cls or a grid cell Y,X", "write cells as --where 3,4")
        out.append((int(parts[0]), int(parts[1])))
    return "cells", out


def steer(cfg: SteerConfig, steerer: Steerer | None = None) -> dict[str, Any]:
    """Before/after table of one edit on ``cfg.image``; heatmap PNGs under ``cfg.out`` (default RUN/steer/images)."""
    steerer = steerer or Steerer.open(cfg.run, device=cfg.device, head=cfg.head)
    edit = build_edit(cfg, steerer)
    index_B = steerer.find_images(cfg.image)
    imgs = steerer.images(steerer.store_split, index_B)
    before_BL = steerer.logits(imgs.pixels_BCHW)
    after_BL = steerer.logits(imgs.pixels_BCHW, edit)
    eff = effects(before_BL, after_BL, imgs.label_B, steerer.class_names,
                  steerer.dataset.hierarchy if steerer.head.kind == "classifier" else None)  # fmt: skip
    names = steerer.class_names
    out = Path(cfg.out) if cfg.out is not None else Path(steerer.info.path) / STEER_DIR / "images"
    maps = _maps(steerer, imgs, edit) if steerer.grid is not None else None
    rows = []
    for b in range(len(imgs)):
        row = {
            "image": imgs.ids[b],
            "label": names[imgs.label_B[b]] if 0 <= imgs.label_B[b] < len(names) else None,
            "before": top_classes(before_BL[b], names, cfg.top),
            "after": top_classes(after_BL[b], names, cfg.top),
            "margin_before": _num(eff.margin_before_B[b]),
            "margin_after": _num(eff.margin_after_B[b]),
            "flip": bool(eff.flip_B[b]),
            "kl": float(eff.kl_B[b]),
        }
        if maps is not None:
            row["heatmap"] = str(_heatmap(steerer, imgs, b, maps, cfg, edit, out))
        rows.append(row)
    return {"edit": edit.model_dump(mode="json"), "head": steerer.head.to_json(), "images": rows, "summary": eff.summary()}


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _maps(steerer: Steerer, imgs: Any, edit: Edit) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, after) dense codes of the edited latents per cell, (B, U, G) each: the edit's operations applied
    as the splice applies them (``edited_codes``), prefix tokens (CLS, registers) left out of the maps."""
    x_BND = steerer.layer_tokens(imgs.pixels_BCHW)
    latents = edit.latents()
    B, N, _ = x_BND.shape
    n_prefix = steerer.layout.n_prefix
    z_BNU = torch.zeros(B, N, len(latents))
    z_BNU[:, n_prefix:] = steerer.patch_codes(x_BND)[..., latents]
    z_edit_BNU = edited_codes(edit, steerer.layout, N, B, z_BNU.reshape(B * N, -1), latents).reshape(B, N, -1)
    return z_BNU[:, n_prefix:].permute(0, 2, 1), z_edit_BNU[:, n_prefix:].permute(0, 2, 1)


def _heatmap(steerer: Steerer, imgs: Any, b: int, maps: tuple[torch.Tensor, torch.Tensor], cfg: SteerConfig,
             edit: Edit, out: Path) -> Path:  # fmt: skip
    """One PNG per image: for each edited latent, its map before and after the edit (one colour scale per latent)."""
    from visae.analysis.heatmaps import render
    from visae.analysis.inputs import model_view
    from visae.atomic import write_with

    view = model_view(steerer.preprocess, steerer.split(imgs.split)[int(imgs.index_B[b])].image_HWC)
    H, W = steerer.grid  # type: ignore[misc]
    before, after = maps
    latents = edit.latents()
    size = 160
    canvas = Image.new("RGB", (2 * size + 12, len(latents) * (size + 18)), "white")
    draw = ImageDraw.Draw(canvas)
    for u, latent in enumerate(latents):
        vmax = max(float(steerer.max_act()[latent]), 1e-6)
        z0 = before[b, u].reshape(H, W).numpy()
        z1 = after[b, u].reshape(H, W).numpy()
        y = u * (size + 18)
        canvas.paste(render(view, np.clip(z0, 0, None), vmax, size), (0, y + 16))
        canvas.paste(render(view, np.abs(z1), vmax, size), (size + 12, y + 16))
        sign = " (magnitude; negative)" if (z1 < 0).any() else ""
        draw.text((2, y + 2), f"latent {latent} before", fill="black")
        draw.text((size + 14, y + 2), f"after{sign}", fill="black")
    key = hashlib.sha1(edit.model_dump_json().encode()).hexdigest()[:10]
    path = out / f"{imgs.ids[b].replace('/', '_')}-{key}.png"
    out.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: canvas.save(tmp, format="PNG"))
    return path


def ablate(cfg: AblateConfig, steerer: Steerer | None = None) -> dict[str, Any]:
    """Input-space ablation of ``cfg.latent`` on its top held-out images (or the named ones) against random cells."""
    from visae.steering.ablate import ablation_eval

    steerer = steerer or Steerer.open(cfg.run, device=cfg.device, head=cfg.head)
    steerer.check_latents([cfg.latent])
    if steerer.grid is None:
        raise VisaeError(f"layer '{steerer.layer}' has no grid of cells to ablate", "ablate a run on a CNN map or a ViT patch grid")
    if cfg.images == ["top"]:
        split = steerer.eval_split()
        imgs = steerer.images(split, steerer.sample_indices(split, cfg.pool, cfg.seed))
    else:
        imgs = steerer.images(steerer.store_split, steerer.find_images(cfg.images))
    codes_BGS = steerer.patch_codes(steerer.layer_tokens(imgs.pixels_BCHW))
    if cfg.images == ["top"]:
        pool = Pool(imgs, torch.zeros(0), codes_BGS.amax(1))
        rows = own_images(pool, cfg.latent, cfg.n_images)
        if not len(rows):
            raise VisaeError(f"latent {cfg.latent} does not fire on any of {len(imgs)} held-out images",
                             "pick a live latent (the report lists them), or raise --pool")  # fmt: skip
        imgs, codes_BGS = imgs.subset(rows), codes_BGS[torch.from_numpy(rows)]
    res = ablation_eval(steerer, cfg.latent, imgs, codes_BGS, mode=cfg.mode, threshold=cfg.threshold,
                        draws=cfg.draws, seed=cfg.seed)  # fmt: skip
    if res["images"]:
        res["written"] = _write_ablation(steerer, cfg, imgs, codes_BGS, res)
    return res


def _write_ablation(steerer: Steerer, cfg: AblateConfig, imgs: Any, codes_BGS: torch.Tensor, res: dict[str, Any]) -> list[str]:
    """RUN/steer/ablate-LATENT-MODE.json and a strip of the images before and after their ablation."""
    from visae.atomic import write_json
    from visae.lock import locked
    from visae.steering.ablate import ablate_cells, ablation_figure, latent_cells

    out = Path(cfg.out) if cfg.out is not None else Path(steerer.info.path) / STEER_DIR
    cells_BG, fires_B = latent_cells(codes_BGS[:, :, cfg.latent], cfg.threshold)
    rows = torch.nonzero(fires_B)[:, 0]
    ablated_BCHW = ablate_cells(imgs.pixels_BCHW[rows], cells_BG[rows], steerer.grid, cfg.mode)
    stem = f"ablate-{cfg.latent}-{cfg.mode}"
    with locked(Path(steerer.info.path)) if cfg.out is None else contextlib.nullcontext():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / f"{stem}.json", res)
        ablation_figure(imgs.pixels_BCHW[rows], ablated_BCHW, steerer.preprocess, out / f"{stem}.png")
    return [str(out / f"{stem}.json"), str(out / f"{stem}.png")]

