"""Ontology recovery: do units pick out nodes of the label tree, and does code space mirror the tree?

After arXiv 2508.11277. The tree is the dataset's hierarchy (levels leaf first, e.g. variant -> family ->
manufacturer, an implicit root above the last level) or a JSON ``{"levels", "parents"}`` passed as option
``hierarchy``. Image features are per-image maxima ``a_bs = max_{t in b} z_ts`` of each encoder's codes.
The held-out images are split 50/50 by image, stratified by label (seeded: ``scores.split_halves``); its
labelled images of classes with >= 2 images form the selection half ``A`` and the scoring half ``B``.
``n`` = classes used, ``m_cs^A`` = mean of ``a_bs`` over class-c images of A.

Selective set of unit s (selection half only)::

    C_s = {c : m_cs^A >= REL * max_c' m_c's^A}        REL = 0.5
    s is selective  iff  max_c m_cs^A > 0,  |C_s| <= MAX_SHARE * n,  #{b in A : a_bs > 0} >= MIN_IMAGES

held on scoring     = share of selective units with argmax_c m_cs^B in C_s      (chance: mean_s |C_s| / n)
height(S)           = min{h : all classes of S share one ancestor at level h}   (0 = one leaf, L = root)
heights[h]          = share of selective units with height(C_s) = h
                      (chance: same-size random class sets, P(height <= h) = sum_v C(|v|, k) / C(n, k)
                       over the nodes v at level h, k = |C_s|)
exact_nodes[level]  = share of the nodes at that level with some s: C_s = leaves(v) (the node's classes used)
spearman            = Spearman rho over class pairs c < c' of cos-distance(m_c^B, m_c'^B) and height({c, c'}),
                      ranks with ties averaged (``scores.spearman``); permutation baseline: the same with the
                      tree's leaves permuted over the classes (mean and sd over N_PERM seeded permutations)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError
from visae.evals.context import BASELINES
from visae.evals.data import Missing
from visae.evals.scores import spearman, split_halves

REL = 0.5
"""A class belongs to C_s when its mean reaches this share of the unit's largest class mean."""
MAX_SHARE = 0.5
"""At most this share of the classes in C_s: a unit on more is generic, its LCA nearly always the root."""
MIN_IMAGES = 5
"""A unit must fire (a_bs > 0) on at least this many selection images: fewer is one image's noise."""
N_PERM = 20
ENCODERS = ("sae",) + BASELINES


def evaluate(ctx: Any) -> dict[str, Any]:
    es = ctx.heldout
    tree = load_tree(ctx)
    anc_LC, keep_C, names = tree_of_classes(tree, es.class_names, es.label_B)
    sel_B, score_B, y_B = split_images(es.label_B, keep_C, ctx.seed)
    n = int(keep_C.sum())
    if n < 3:
        raise Missing(f"only {n} classes have 2+ held-out images in the tree (ontology needs 3)", "evaluate on more images or classes")
    anc_LC = anc_LC[:, keep_C]
    levels = list(tree.levels)
    nodes = {lv: int(len(np.unique(anc_LC[h]))) for h, lv in enumerate(levels)}
    tree_CC = pair_heights(anc_LC)
    perms = [np.random.default_rng([ctx.seed, i]).permutation(n) for i in range(N_PERM)]
    by, perm = {}, {}
    for enc in ENCODERS:
        a_BS = es.per_image_max(ctx.codes(enc)).double().numpy()
        a_BS = np.where(np.isfinite(a_BS), a_BS, 0.0)
        by[enc], perm[enc] = score_encoder(a_BS, y_B, sel_B, score_B, n, anc_LC, levels, tree_CC, perms)
    return {
        "levels": levels,
        "split": {"selection_images": int(sel_B.sum()), "scoring_images": int(score_B.sum()), "classes": n,
                  "classes_unused": len(names) - n, "seed": int(ctx.seed)},  # fmt: skip
        "criteria": {"rel": REL, "max_share": MAX_SHARE, "min_images": MIN_IMAGES, "permutations": N_PERM},
        "nodes": nodes,
        "by": by,
        "permutation_spearman": perm,
    }


def load_tree(ctx: Any) -> Any:
    """The option ``hierarchy`` (a JSON file) if given, else the dataset's hierarchy; Missing without either."""
    from visae.data.base import Hierarchy

    path = (getattr(ctx, "options", None) or {}).get("hierarchy")
    if path:
        try:
            return Hierarchy.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise VisaeError(f"cannot read the hierarchy {path} ({e})", 'pass a JSON {"levels": [...], "parents": {level: {child: parent}}}') from e
    if getattr(ctx.heldout, "hierarchy", None) is None:
        raise Missing("the dataset has no label hierarchy", 'pass --option hierarchy=TREE.json ({"levels": [...], "parents": {...}})')
    return ctx.heldout.hierarchy


def tree_of_classes(tree: Any, class_names: list[str], label_B: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``anc_LC``: per level h, an integer id of each class's ancestor (-1 when outside the tree); ``keep_C``:
    classes in the tree with >= 2 labelled images."""
    if not class_names:
        raise Missing("the held-out set has no class names (its dataset cannot be opened)", "keep the dataset where the store was extracted from")
    anc_LC = np.full((len(tree.levels), len(class_names)), -1, dtype=np.int64)
    ids: list[dict[str, int]] = [{} for _ in tree.levels]
    for c, name in enumerate(class_names):
        try:
            path = [tree.ancestor(name, lv) for lv in tree.levels]
        except KeyError:
            continue
        for h, node in enumerate(path):
            anc_LC[h, c] = ids[h].setdefault(node, len(ids[h]))
    counts_C = np.bincount(label_B[label_B >= 0], minlength=len(class_names))[: len(class_names)]
    return anc_LC, (anc_LC[0] >= 0) & (counts_C >= 2), list(class_names)


def split_images(label_B: np.ndarray, keep_C: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selection mask, scoring mask, class index 0..n-1 of each image or -1): the shared split
    (``scores.split_halves`` of all the labels) with the images of unkept classes and unlabelled ones left out."""
    remap_C = np.cumsum(keep_C) - 1
    lab_B = label_B.clip(0, len(keep_C) - 1)
    y_B = np.where((label_B >= 0) & (label_B < len(keep_C)) & keep_C[lab_B], remap_C[lab_B], -1)
    half_B = split_halves(label_B, seed)
    return half_B & (y_B >= 0), ~half_B & (y_B >= 0), y_B


def class_means(a_BS: np.ndarray, y_B: np.ndarray, mask_B: np.ndarray, n: int) -> np.ndarray:
    """``m_CS``: mean feature of each class over the masked images."""
    y = y_B[mask_B]
    onehot_BC = np.zeros((len(y), n))
    onehot_BC[np.arange(len(y)), y] = 1.0
    return (onehot_BC.T @ a_BS[mask_B]) / onehot_BC.sum(0).clip(1)[:, None]


def selective_sets(m_CS: np.ndarray, fires_S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``set_SC`` boolean C_s of each unit, ``ok_S`` whether the unit is selective)."""
    top_S = m_CS.max(0)
    set_SC = (m_CS >= REL * top_S).T & (top_S > 0)[:, None]
    n = m_CS.shape[0]
    ok_S = (top_S > 0) & (set_SC.sum(1) <= MAX_SHARE * n) & (fires_S >= MIN_IMAGES)
    return set_SC, ok_S


def lca_heights(set_SC: np.ndarray, anc_LC: np.ndarray) -> np.ndarray:
    """Height of the lowest common ancestor of each set: the first level where its classes share one node
    (L, the root, when none does)."""
    L = anc_LC.shape[0]
    h_S = np.full(len(set_SC), L, dtype=np.int64)
    for h in reversed(range(L)):
        onehot_CV = np.eye(anc_LC[h].max() + 1)[anc_LC[h]]
        one_S = ((set_SC.astype(np.float64) @ onehot_CV) > 0).sum(1) == 1
        h_S[one_S] = h
    return h_S


def height_chance(k: int, anc_LC: np.ndarray) -> np.ndarray:
    """P(height = h), h = 0..L, for a uniformly random set of k of the n classes."""
    n, L = anc_LC.shape[1], anc_LC.shape[0]
    cdf = [sum(math.comb(int(s), k) for s in np.bincount(anc_LC[h])) / math.comb(n, k) for h in range(L)] + [1.0]
    return np.diff(np.concatenate([[0.0], cdf]))


def exact_nodes(set_SC: np.ndarray, anc_LC: np.ndarray) -> np.ndarray:
    """Per level, the share of its nodes whose classes are exactly C_s for some unit."""
    units = {np.packbits(row).tobytes() for row in set_SC}
    out = []
    for h in range(anc_LC.shape[0]):
        vs = np.unique(anc_LC[h])
        out.append(float(np.mean([np.packbits(anc_LC[h] == v).tobytes() in units for v in vs])))
    return np.asarray(out)


def pair_heights(anc_LC: np.ndarray) -> np.ndarray:
    """``tree_CC``: height of the LCA of each pair of classes (0 on the diagonal)."""
    L = anc_LC.shape[0]
    tree_CC = np.full((anc_LC.shape[1],) * 2, L, dtype=np.float64)
    for h in reversed(range(L)):
        tree_CC[anc_LC[h][:, None] == anc_LC[h][None, :]] = h
    return tree_CC


def cosine_distance(m_CS: np.ndarray) -> np.ndarray:
    """1 − cos between class mean vectors (a zero vector has cosine 0 with everything)."""
    norm_C = np.linalg.norm(m_CS, axis=1)
    unit_CS = m_CS / np.where(norm_C > 0, norm_C, 1.0)[:, None]
    return 1.0 - unit_CS @ unit_CS.T


def score_encoder(a_BS: np.ndarray, y_B: np.ndarray, sel_B: np.ndarray, score_B: np.ndarray, n: int, anc_LC: np.ndarray,
                  levels: list[str], tree_CC: np.ndarray, perms: list[np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """One encoder's numbers, and its permutation baseline of the Spearman correlation."""
    mA_CS, mB_CS = class_means(a_BS, y_B, sel_B, n), class_means(a_BS, y_B, score_B, n)
    set_SC, ok_S = selective_sets(mA_CS, (a_BS[sel_B] > 0).sum(0))
    sets = set_SC[ok_S]
    L = len(levels)
    h_S = lca_heights(sets, anc_LC)
    k_S = sets.sum(1)
    ks, counts = np.unique(k_S, return_counts=True)  # the chance depends on |C_s| only
    chance_H = sum(c * height_chance(int(k), anc_LC) for k, c in zip(ks, counts)) / len(k_S) if len(sets) else None
    held = set_SC[ok_S, mB_CS.argmax(0)[ok_S]] if len(sets) else np.zeros(0, bool)
    iu = np.triu_indices(n, 1)
    dist_P = cosine_distance(mB_CS)[iu]
    rho_perm = [spearman(dist_P, tree_CC[p][:, p][iu]) for p in perms]
    rho_perm = [r for r in rho_perm if r is not None]
    out = {
        "selective_units": int(ok_S.sum()),
        "of": int(a_BS.shape[1]),
        "selective_share": float(ok_S.mean()) if a_BS.shape[1] else None,
        "heights": {str(h): _share(h_S == h) for h in range(L + 1)},
        "heights_chance": {str(h): (float(chance_H[h]) if chance_H is not None else None) for h in range(L + 1)},
        "mean_height": float(h_S.mean()) if len(h_S) else None,
        "mean_height_chance": float(chance_H @ np.arange(L + 1)) if chance_H is not None else None,
        "exact_nodes": dict(zip(levels, exact_nodes(sets, anc_LC).tolist())),
        "holds_on_scoring": _share(held),
        "holds_chance": float(k_S.mean() / n) if len(sets) else None,
        "spearman": spearman(dist_P, tree_CC[iu]),
    }
    perm = {"mean": float(np.mean(rho_perm)) if rho_perm else None, "sd": float(np.std(rho_perm)) if rho_perm else None}
    return out, perm


def _share(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _f(x: Any, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows of measures, one column per encoder (SAE first); chance or permuted value in brackets."""
    encs = list(result["by"])
    by, perm = result["by"], result["permutation_spearman"]
    rows = [["selective units", *[f"{by[e]['selective_units']}/{by[e]['of']}" for e in encs]],
            ["held on scoring half (chance)", *[f"{_f(by[e]['holds_on_scoring'])} ({_f(by[e]['holds_chance'])})" for e in encs]],
            ["mean LCA height (random sets)", *[f"{_f(by[e]['mean_height'])} ({_f(by[e]['mean_height_chance'])})" for e in encs]]]  # fmt: skip
    L = len(result["levels"])
    for h in range(L + 1):
        name = result["levels"][h] if h < L else "root"
        rows.append([f"LCA at {name} (random sets)", *[f"{_f(by[e]['heights'][str(h)])} ({_f(by[e]['heights_chance'][str(h)])})" for e in encs]])
    for lv in result["levels"]:
        rows.append([f"exact {lv} nodes (of {result['nodes'][lv]})", *[_f(by[e]["exact_nodes"][lv]) for e in encs]])
    rows.append(["Spearman code vs tree (permuted)", *[f"{_f(by[e]['spearman'])} ({_f(perm[e]['mean'])})" for e in encs]])
    return ["measure", *encs], rows


def headline(result: dict[str, Any]) -> dict[str, str]:
    by, perm = result["by"], result["permutation_spearman"]
    base = [e for e in by if e != "sae"]
    s = by["sae"]

    def others(key: str, sub: str | None = None) -> str:
        return ", ".join(f"{e} {_f(by[e][key] if sub is None else by[e][key][sub])}" for e in base)

    lv = result["levels"][1] if len(result["levels"]) > 1 else result["levels"][0]
    return {
        "ontology, class-set latents": (f"{s['selective_units']}/{s['of']} SAE latents prefer a set of at most half the classes "
                               f"(not the analysis's class selectivity), mean LCA height {_f(s['mean_height'])} "
                               f"(random class sets {_f(s['mean_height_chance'])}; {others('mean_height')})"),
        "ontology, exact tree nodes": f"{lv} nodes matched exactly by a unit: SAE {_f(s['exact_nodes'][lv])} ({others('exact_nodes', lv)})",
        "ontology, code vs tree distances": (f"Spearman(code distance, tree distance): SAE {_f(s['spearman'])}, permuted {_f(perm['sae']['mean'])} "
                              f"({others('spearman')})"),
    }  # fmt: skip
