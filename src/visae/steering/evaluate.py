"""``visae steer-eval``: every causal test of a run's most selective latents, against their baselines.

Writes RUN/steer/: ``suppression.json`` (per latent: suppression at −2× max and zero-ablation, with
the random-direction baseline), ``dose.json`` (dose-response), ``ablation.json`` (input-space
ablation vs random cells), ``segmentation.json`` (the SAE-V probe protocol, where there are part
masks), ``truth.json`` (the ground-truth check, on the synthetic aircraft) and ``summary.json``
(the headline numbers), plus PNG plots where matplotlib is installed. Every number is measured
on held-out images (docs/steering.md).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.atomic import write_json
from visae.errors import VisaeError
from visae.lock import locked
from visae.progress import info, warn
from visae.steering.choose import Pick, choose
from visae.steering.config import SteerEvalConfig
from visae.steering.session import Steerer
from visae.steering.suppress import Pool, dose_response, latent_effects, own_images
from visae.steering.truth import truth_check

STEER_DIR = "steer"
RESULTS = ("summary.json", "suppression.json", "dose.json", "ablation.json", "segmentation.json", "truth.json")
MAX_CODES = 200_000_000
"""Dense codes held at once (images × cells × latents): the image pool shrinks to fit."""


def steer_eval(cfg: SteerEvalConfig, steerer: Steerer | None = None) -> dict[str, Any]:
    """Run every test of the module docstring; return the summary (also written to RUN/steer/summary.json)."""
    t0 = time.perf_counter()
    steerer = steerer or Steerer.open(cfg.run, device=cfg.device, head=cfg.head, probe_images=cfg.probe_images)
    out = Path(steerer.info.path) / STEER_DIR
    existing = [f for f in RESULTS if (out / f).exists()]
    if existing and not cfg.force:
        raise VisaeError(f"{out} already holds steer-eval results ({', '.join(existing)})", "pass --force to replace them")
    chosen = cfg.latent_list()
    if chosen is not None:
        steerer.check_latents(chosen)
    picks = choose(steerer.db, steerer.d_sae, cfg.per_group, cfg.random_latents, chosen, cfg.seed)
    pool = make_pool(steerer, cfg)
    results = run_tests(steerer, pool, picks, cfg)
    summary = headline(steerer, pool, picks, results, cfg, time.perf_counter() - t0)
    with locked(Path(steerer.info.path)):
        out.mkdir(exist_ok=True)
        for name, obj in results.items():
            write_json(out / f"{name}.json", obj)
        write_json(out / "summary.json", summary)
        from visae.steering.plots import plot_all

        plot_all(out, results)
    info(f"[steer-eval] wrote {out} in {time.perf_counter() - t0:.1f} s")
    return summary


def make_pool(steerer: Steerer, cfg: SteerEvalConfig) -> Pool:
    """The held-out images, their clean logits, layer tokens and codes."""
    split = steerer.eval_split()
    grid_G = int(np.prod(steerer.grid)) if steerer.grid else 1
    n = min(cfg.n_images, max(8, MAX_CODES // (grid_G * steerer.d_sae)))
    if n < cfg.n_images:
        warn(f"--n-images {cfg.n_images} x {grid_G} cells x {steerer.d_sae} latents is too many codes to hold: using {n} images")
    imgs = steerer.images(split, steerer.sample_indices(split, n, cfg.seed))
    logits_BL = steerer.logits(imgs.pixels_BCHW)
    x_BND = steerer.layer_tokens(imgs.pixels_BCHW)
    codes_BGS = steerer.patch_codes(x_BND)
    return Pool(imgs, logits_BL, codes_BGS.amax(1), x_BND=x_BND, codes_BGS=codes_BGS)


def run_tests(steerer: Steerer, pool: Pool, picks: list[Pick], cfg: SteerEvalConfig) -> dict[str, Any]:
    meta = {"split": pool.images.split, "images": len(pool.images), "head": steerer.head.to_json(),
            "clean_top1": _top1(pool), "scale": cfg.scale}  # fmt: skip
    rows = []
    for p in picks:
        r = latent_effects(steerer, pool, p.latent, per_latent=cfg.per_latent, scale=cfg.scale,
                           n_directions=cfg.directions, seed=cfg.seed)  # fmt: skip
        rows.append({"group": p.group, "label": p.label, "part": p.part, "top_class": p.top_class, **r})
    doses = {}
    for group in ("class", "part", "chosen", "random"):
        first = next((p for p in picks if p.group == group and len(own_images(pool, p.latent, 1))), None)
        if first is not None:
            doses[str(first.latent)] = {"group": group, "rows": dose_response(steerer, pool, first.latent, cfg.doses, cfg.per_latent)}
    return {
        "suppression": {**meta, "latents": rows},
        "dose": {**meta, "doses": cfg.doses, "latents": doses},
        "ablation": ablation(steerer, pool, picks, cfg),
        "segmentation": segmentation(steerer, pool, cfg),
        "truth": truth_check(steerer, pool, picks, cfg),
    }


def _top1(pool: Pool) -> float | None:
    lab = pool.images.label_B >= 0
    return float((pool.logits_BL.argmax(1).numpy() == pool.images.label_B)[lab].mean()) if lab.any() else None


def ablation(steerer: Steerer, pool: Pool, picks: list[Pick], cfg: SteerEvalConfig) -> dict[str, Any]:
    if steerer.grid is None:
        return {"skipped": "the layer has no grid of cells"}
    from visae.steering.ablate import ablation_eval

    results = []
    for p in picks:
        rows = own_images(pool, p.latent, min(cfg.per_latent, 32))
        if len(rows):
            sub = pool.images.subset(rows)
            r = ablation_eval(steerer, p.latent, sub, pool.codes_BGS[torch.from_numpy(rows)], mode=cfg.ablate_mode,
                              draws=cfg.draws, seed=cfg.seed)  # fmt: skip
            results.append({"group": p.group, **r})
    return {"mode": cfg.ablate_mode, "draws": cfg.draws, "latents": results}


def segmentation(steerer: Steerer, pool: Pool, cfg: SteerEvalConfig) -> dict[str, Any]:
    if steerer.grid is None:
        return {"skipped": "the layer has no grid of cells"}
    eval_set, train_set, names = pool.images, None, None
    if cfg.masks is not None:  # the user's label PNGs, for the held-out images and the probe's training images
        from visae.steering.masks import folder_masks

        parts_BG, names = folder_masks(cfg.masks, eval_set.ids, steerer.preprocess, steerer.grid)
        eval_set = replace(eval_set, parts_BG=parts_BG)
        idx = steerer.sample_indices(steerer.store_split, cfg.probe_images + len(eval_set), cfg.seed + 1)
        if steerer.store_split == eval_set.split:
            idx = np.setdiff1d(idx, eval_set.index_B)
        train_set = steerer.images(steerer.store_split, idx[: cfg.probe_images])
        train_set = replace(train_set, parts_BG=folder_masks(cfg.masks, train_set.ids, steerer.preprocess, steerer.grid)[0])
    elif eval_set.parts_BG is None:
        return {"skipped": "the dataset has no part masks (give --masks DIR)"}
    from visae.steering.segment import segmentation_eval

    return segmentation_eval(steerer, eval_set, pool.x_BND, pool.codes_BGS, train_images=cfg.probe_images, scale=cfg.scale,
                             draws=cfg.draws, seed=cfg.seed, train_set=train_set, part_names=names)  # fmt: skip


def group_mean(rows: list[dict[str, Any]], group: str, key: str, field: str) -> float | None:
    vals = [r[key][field] for r in rows if r["group"] == group and isinstance((r.get(key) or {}).get(field), (int, float))]
    return float(np.mean(vals)) if vals else None


def headline(steerer: Steerer, pool: Pool, picks: list[Pick], results: dict[str, Any], cfg: SteerEvalConfig,
             seconds: float) -> dict[str, Any]:  # fmt: skip
    """The numbers the demo prints and the report leads with (definitions: docs/steering.md)."""
    sup = results["suppression"]["latents"]
    groups = sorted({r["group"] for r in sup} - {"random"}) + ["random"]
    suppression = {g: {f: group_mean(sup, g, "suppress", f) for f in ("flip_rate", "margin_change", "kl")} for g in groups}
    suppression["random_direction"] = {f: _mean_over(sup, "suppress_random_direction", f, exclude="random")
                                       for f in ("flip_rate", "margin_change", "kl")}  # fmt: skip
    abl = results["ablation"].get("latents") or []
    seg = results["segmentation"]
    tr = [t for t in results["truth"].get("latents") or [] if t["powered"]]
    return {
        "run": str(steerer.info.path),
        "split": pool.images.split,
        "images": len(pool.images),
        "head": steerer.head.to_json(),
        "latents": {g: [p.latent for p in picks if p.group == g] for g in groups},
        "suppression": suppression,
        "ablation": {**_ablation_means(abl), "mode": cfg.ablate_mode} if abl
                    else {"skipped": results["ablation"].get("skipped", "no latent fired")},  # fmt: skip
        "segmentation": seg.get("macro", {"skipped": seg.get("skipped")}) | ({"probe_accuracy": seg["probe"]["accuracy"], "probe_chance": seg["probe"]["chance"]} if "probe" in seg else {}),
        "truth": {"lift": _mean([t["lift"] for t in tr]),
                  "passed": sum(1 for t in tr if _passes(t)),
                  "random_direction_lift": _mean([t["random_direction"].get("lift") for t in tr]),
                  "random_latent_lift": _mean([t["random_latent"].get("lift") for t in tr]),
                  "directed_share": _mean([t["directed_share"] for t in tr]), "chance_share": _mean([t["chance_share"] for t in tr]),
                  "latents": len(tr)} if tr else {"skipped": results["truth"].get("skipped", "no part latent with generating factors")},  # fmt: skip
        "seconds": round(seconds, 1),
        "config": cfg.model_dump(mode="json"),
    }


def _passes(t: dict[str, Any]) -> bool:
    """A part latent's lift is above 1 and above both of its random baselines."""
    lift = t.get("lift") or 0.0
    return lift > 1 and all(lift > (t[k].get("lift") or 0.0) for k in ("random_direction", "random_latent"))


def _ablation_means(abl: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean true-class margin change of ablating the cells of the selective latents, of the random latents,
    and of their random-cell controls."""
    sel = [a for a in abl if a.get("latent") and a["group"] != "random"]
    rnd = [a for a in abl if a.get("latent") and a["group"] == "random"]
    return {"latent_margin_change": _mean([a["latent"].get("margin_change") for a in sel]),
            "control_margin_change": _mean([a["control"].get("margin_change") for a in sel]),
            "random_latent_margin_change": _mean([a["latent"].get("margin_change") for a in rnd]),
            "random_latent_control_margin_change": _mean([a["control"].get("margin_change") for a in rnd])}  # fmt: skip


def _mean_over(rows: list[dict[str, Any]], key: str, field: str, exclude: str) -> float | None:
    return _mean([(r.get(key) or {}).get(field) for r in rows if r["group"] != exclude])


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None
