"""Concept recovery with ground truth: for each annotated concept, how well does the best single unit find it?

Concepts ``c`` (docs/metrics.md, "Concept recovery"):

- a part ``p`` of the masks (background, part 0, is no concept): patch level, token ``t`` is positive iff
  ``parts_T[t] == p``, its score under unit ``s`` is ``z_ts``;
- a value ``v`` of a generating factor ``f`` (factors with >= 2 values): image level, image ``b`` is positive
  iff ``factors_B[f][b] == v``, its score under unit ``s`` is ``max_{t in b} z_ts`` (``per_image_max``).

The held-out images are split 50/50 by image (seeded, stratified by class label: ``scores.split_halves``) into
a selection half ``A`` and a scoring half ``B``; a concept is kept when each half holds >= ``min_positives`` (4)
positives and negatives. For each concept and each encoder (the SAE and every baseline, the same code path):

    s*(c)   = argmax_s AP_A(z_s, y_c)                       (first unit on ties)
    AP(c)   = AP_B(z_s*, y_c),   AUROC(c) = AUROC_B(z_s*, y_c)

    AP(z, y)    = sum_n (R_n - R_{n-1}) P_n      over the distinct thresholds z_(n), descending
                                                 (precision P_n and recall R_n of z >= z_(n); ties form one step)
    AUROC(z, y) = (sum_{i: y_i = 1} rank_i - P (P + 1) / 2) / (P N)   (ranks ascending, ties averaged: Mann-Whitney U)
    chance(c)   = P / (P + N) on B                        (the AP of a constant score)

(AP, AUROC and the split: ``visae.evals.scores``.)

Per encoder: ``map`` = mean_c AP(c), ``mean_auroc`` = mean_c AUROC(c), ``coverage@0.3`` = share of concepts with
AP(c) >= 0.3, and ``purity@16`` = mean over part concepts of Purity@16(c): the 16 highest-activating tokens of
unit s*(c) among the scoring half's tokens with z > 0 (at most 2 per image, ties broken in a seeded random order),
and the share of them on part c; None when fewer than 8 images of B activate the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from visae.evals.context import BASELINES
from visae.evals.data import EvalSet, Missing
from visae.evals.scores import ap, auroc, average_precision, split_halves

ENCODERS = ("sae", *BASELINES)
NAMES = {"sae": "SAE", "random_sae": "random SAE", "raw": "raw", "pca": "PCA", "kmeans": "k-means"}


@dataclass
class Concept:
    kind: str
    """"part" or the factor's name."""
    value: str
    level: str
    """"patch" (y over tokens) or "image" (y over images)."""
    y: np.ndarray
    """Positive tokens (patch) or images (image), bool."""


# ---------------------------------------------------------------- Purity@16


def purity_at(z_N: np.ndarray, image_N: np.ndarray, y_N: np.ndarray, rng: np.random.Generator, k: int = 16,
              per_image: int = 2, min_images: int = 8) -> float | None:  # fmt: skip
    """Share of the unit's ``k`` top tokens (z > 0, at most ``per_image`` per image) that are positive; None when
    fewer than ``min_images`` images have an active token."""
    idx = np.flatnonzero(z_N > 0)
    if len(np.unique(image_N[idx])) < min_images:
        return None
    idx = idx[rng.permutation(len(idx))]  # random order among ties
    idx = idx[np.argsort(-z_N[idx], kind="stable")]
    im = image_N[idx]
    o = np.argsort(im, kind="stable")  # within each image, descending activation order is kept
    new = np.r_[True, im[o][1:] != im[o][:-1]]
    start = np.maximum.accumulate(np.where(new, np.arange(len(o)), 0))
    occ = np.empty(len(o), dtype=np.int64)
    occ[o] = np.arange(len(o)) - start
    top = idx[occ < per_image][:k]
    return float(np.asarray(y_N, dtype=bool)[top].mean())


# ---------------------------------------------------------------- concepts


def find_concepts(es: EvalSet) -> list[Concept]:
    """Every part (but background) present in the masks, then every value of every factor with >= 2 values."""
    out: list[Concept] = []
    if es.parts_T is not None:
        names = es.part_names or []
        for p in np.unique(es.parts_T):
            if p != 0:
                out.append(Concept("part", names[p] if p < len(names) else f"part {p}", "patch", es.parts_T == p))
    for f, vals_B in (es.factors_B or {}).items():
        vals_B = np.asarray(vals_B).astype(str)
        values = [v for v in np.unique(vals_B) if v != "None"]  # "None": not recorded for that image
        if len(values) >= 2:
            out.extend(Concept(f, str(v), "image", vals_B == v) for v in values)
    return out


# ---------------------------------------------------------------- evaluation


def evaluate(ctx: Any) -> dict[str, Any]:
    """Best-unit AP, AUROC, Coverage@0.3 and Purity@16 of the SAE and its baselines on every ground-truth concept."""
    es: EvalSet = ctx.heldout
    opt = ctx.options or {}
    min_pos, thr = int(opt.get("concepts_min_positives", 4)), 0.3
    concepts = find_concepts(es)
    if not concepts:
        raise Missing(f"no part masks or factor labels in {es.dataset} ({es.split} split)",
                      "evaluate on a dataset with part masks or generating factors (e.g. synth-aircraft:DIR)")  # fmt: skip
    sel_B = split_halves(es.label_B, ctx.seed)
    sel_T = sel_B[es.image_T]
    kept, excluded = [], []
    for c in concepts:
        half = sel_T if c.level == "patch" else sel_B
        counts = [int((c.y & h).sum()) for h in (half, ~half)] + [int((~c.y & h).sum()) for h in (half, ~half)]
        if min(counts) >= min_pos:
            kept.append(c)
        else:
            excluded.append({"kind": c.kind, "value": c.value, "why": f"fewer than {min_pos} positives or negatives in a half"})
    if not kept:
        raise Missing(f"no part or factor value has {min_pos} positives and negatives in each half of the {es.n_images} held-out images",
                      "evaluate on more held-out images (--max-images)")  # fmt: skip
    rows = []
    for c in kept:
        score = ~(sel_T if c.level == "patch" else sel_B)
        rows.append({"kind": c.kind, "value": c.value, "level": c.level, "positives": int(c.y[score].sum()),
                     "of": int(score.sum()), "chance_ap": float(c.y[score].mean()), "by": {}})  # fmt: skip
    encoders, skipped = {}, {}
    for name in ENCODERS:
        try:
            codes_TS = ctx.codes(name)
        except (ValueError, KeyError) as e:  # e.g. no spec to rebuild a random-init SAE from
            skipped[name] = str(e)
            continue
        enc = getattr(ctx, "encoder", None)
        encoders[name] = {"width": int(codes_TS.shape[1]), "what": enc(name).what if callable(enc) else name}
        for row, by in zip(rows, score_encoder(es, codes_TS, kept, sel_B, ctx.seed, min_pos)):
            row["by"][name] = by
    summary = {name: summarise([r["by"][name] for r in rows], [r["kind"] for r in rows], thr) for name in encoders}
    chance = [r["chance_ap"] for r in rows]
    parts = [r["chance_ap"] for r in rows if r["kind"] == "part"]
    factors = [r["chance_ap"] for r in rows if r["kind"] != "part"]
    return {
        "split": {"by": "image", "stratified_by": "label", "seed": int(ctx.seed), "selection_images": int(sel_B.sum()),
                  "scoring_images": int((~sel_B).sum()), "selection_tokens": int(sel_T.sum()), "scoring_tokens": int((~sel_T).sum())},
        "settings": {"min_positives": min_pos, "coverage_threshold": thr, "purity_k": 16, "purity_per_image": 2, "purity_min_images": 8},
        "encoders": encoders,
        "skipped": skipped,
        "concepts": rows,
        "excluded": excluded,
        "summary": summary,
        "chance": {"map": _mean(chance), "map_parts": _mean(parts), "map_factors": _mean(factors), "mean_auroc": 0.5,
                   "coverage@0.3": _mean([float(v >= thr) for v in chance]), "purity@16": _mean(parts)},
    }  # fmt: skip


def score_encoder(es: EvalSet, codes_TS: Any, concepts: list[Concept], sel_B: np.ndarray, seed: int,
                  min_pos: int) -> list[dict[str, Any]]:  # fmt: skip
    """Per concept: the unit chosen on the selection half and its AP, AUROC (and Purity@16 for parts) on the scoring half."""
    z_TS = codes_TS.detach().float().cpu().numpy() if hasattr(codes_TS, "detach") else np.asarray(codes_TS, np.float32)
    sel_T = sel_B[es.image_T]
    out: dict[int, dict[str, Any]] = {}
    for level, sel, z in (("patch", sel_T, z_TS), ("image", sel_B, None)):
        idx = [i for i, c in enumerate(concepts) if c.level == level]
        if not idx:
            continue
        if z is None:
            import torch

            z = es.per_image_max(torch.from_numpy(z_TS)).numpy()
        y_NC = np.stack([concepts[i].y for i in idx], 1)
        units = np.argmax(np.nan_to_num(average_precision(z[sel], y_NC[sel]), nan=-1.0), axis=1)
        score = ~sel
        for i, u in zip(idx, units):
            y, zu = concepts[i].y[score], z[score, u]
            pur = None
            if level == "patch":
                pur = purity_at(zu, es.image_T[score], y, np.random.default_rng([seed, i]))
            out[i] = {"unit": int(u), "ap": ap(zu, y), "auroc": auroc(zu, y), "purity16": pur}
    return [out[i] for i in range(len(concepts))]


def summarise(by: list[dict[str, Any]], kinds: list[str], thr: float) -> dict[str, Any]:
    aps = [b["ap"] for b in by]
    pur = [b["purity16"] for b, k in zip(by, kinds) if k == "part" and b["purity16"] is not None]
    return {"map": _mean(aps), "map_parts": _mean([a for a, k in zip(aps, kinds) if k == "part"]),
            "map_factors": _mean([a for a, k in zip(aps, kinds) if k != "part"]),
            "mean_auroc": _mean([b["auroc"] for b in by if b["auroc"] is not None]),
            "coverage@0.3": _mean([float(a >= thr) for a in aps]), "purity@16": _mean(pur),
            "purity_concepts": len(pur), "concepts": len(by), "distinct_units": len({b["unit"] for b in by})}  # fmt: skip


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(np.asarray(xs, dtype=np.float64))) if len(xs) else None


# ---------------------------------------------------------------- report


def _f(v: Any, fmt: str = ".3f") -> str:
    return "–" if v is None else format(v, fmt)


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per encoder (SAE first, then its baselines, then chance); columns the summary measures."""
    header = ["encoder", "units", "mAP", "mAP parts", "mAP factors", "mean AUROC", "Coverage@0.3", "Purity@16"]
    rows = []
    for name, s in result["summary"].items():
        width = result.get("encoders", {}).get(name, {}).get("width")
        rows.append([NAMES.get(name, name), str(width or "–"), _f(s["map"]), _f(s["map_parts"]), _f(s["map_factors"]),
                     _f(s["mean_auroc"]), _f(s["coverage@0.3"], ".2f"), _f(s["purity@16"], ".2f")])  # fmt: skip
    ch = result["chance"]
    rows.append(["chance", "–", _f(ch["map"]), _f(ch["map_parts"]), _f(ch["map_factors"]), _f(ch["mean_auroc"]),
                 _f(ch["coverage@0.3"], ".2f"), _f(ch["purity@16"], ".2f")])  # fmt: skip
    return header, rows


def headline(result: dict[str, Any]) -> dict[str, str]:
    """mAP, Coverage@0.3 and Purity@16 of the SAE next to its baselines and chance."""
    s, ch = result["summary"], result["chance"]

    def line(key: str, fmt: str) -> str:
        others = ", ".join(f"{NAMES.get(n, n)} {_f(v[key], fmt)}" for n, v in s.items() if n != "sae")
        return f"SAE {_f(s.get('sae', {}).get(key), fmt)} vs {others}; chance {_f(ch[key], fmt)}"

    n = len(result["concepts"])
    n_parts = sum(r["kind"] == "part" for r in result["concepts"])
    out = {"concept mAP": f"{line('map', '.3f')} ({n} concepts: {n_parts} parts, {n - n_parts} factor values)",
           "concept Coverage@0.3": line("coverage@0.3", ".2f")}
    if n_parts:
        out["part Purity@16"] = line("purity@16", ".2f")
    return out
