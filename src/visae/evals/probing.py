"""Sparse probing: how well single units, and probes on a few units, find each class and generating factor.

A concept c is a binary task over held-out images: a class (one-vs-rest over the labelled images) or a
value of a generating factor (one-vs-rest over the images whose factor is recorded). An image's feature
for unit s is its largest activation over the image's tokens, ``x_bs = max_{t in b} z_ts``.

The images are split once (seeded, by image, stratified by class label: ``scores.split_halves``) into a
selection half Σ and a scoring half Ω; every choice (best unit, top-k units, probe weights, standardisation)
is made on Σ and every reported number is measured on Ω. Concepts with fewer than ``MIN_POS`` positives or negatives in
either half are skipped.

Average precision (``scores.average_precision``: step-wise, ties grouped), thresholds at distinct values::

    AP(x, y) = Σ_n (R_n − R_{n−1}) · P_n,   P_n = TP_n / (TP_n + FP_n),  R_n = TP_n / N_pos

Best single latent: ``s* = argmax_s AP_Σ(x_s, y)``; reported ``AP_Ω(x_s*, y)``.

Logistic probe on standardised features ``u = (x − μ_Σ) / σ_Σ`` (1 unit: probe1d; k units: top-k)::

    min_{w,b}  Σ_i c_i · log(1 + exp(−(2y_i − 1)(w·u_i + b))) + λ/2 · |w|²,
    c_i = 1 / (2 N_pos) for positives, 1 / (2 N_neg) for negatives (class-balanced), λ = L2

fitted by damped Newton steps on Σ; on Ω it predicts positive where ``w·u + b > 0``:
balanced accuracy ``(TPR + TNR) / 2`` (chance 0.5), and AP of the score ``w·u + b`` (chance: positive rate).

Top-k units: the k largest ``d_s = mean_Σ(u_s | y=1) − mean_Σ(u_s | y=0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visae.evals.data import Missing
from visae.evals.scores import ap, average_precision, split_halves

KS = (1, 2, 5, 16)
"""Top-k probe sizes."""
MIN_POS = 4
"""Fewest positives (and negatives) a concept needs in each half."""
L2 = 1e-3
"""λ of the logistic probes (on standardised features, class-balanced mean loss)."""
UNKNOWN = ("", "None", "nan")
"""Factor values that mean 'not recorded'."""


def evaluate(ctx: Any) -> dict[str, Any]:
    """Best-latent AP, probe1d and top-k probe balanced accuracy per concept, for the SAE and each baseline."""
    from visae.evals.context import BASELINES

    es = ctx.heldout
    opts = ctx.options or {}
    ks = tuple(int(k) for k in opts.get("probing_ks", KS))
    min_pos = max(1, int(opts.get("probing_min_positives", MIN_POS)))
    encoders = list(opts.get("probing_encoders", ("sae", *BASELINES)))
    sel_B = split_halves(es.label_B, int(ctx.seed))
    concepts, skipped = _concepts(es, sel_B, min_pos)
    y_CB = np.stack([c.pop("y_B") for c in concepts]).astype(np.float64)
    known_CB = np.stack([c.pop("known_B") for c in concepts])
    for c, y_B, k_B in zip(concepts, y_CB, known_CB):
        c["chance_ap"] = float(y_B[k_B & ~sel_B].mean())
        c["by"] = {}
    for name in encoders:
        x_BS = ctx.heldout.per_image_max(ctx.codes(name)).float().numpy()
        x_BS = np.where(np.isfinite(x_BS), x_BS, np.float32(0))
        for c, scores in zip(concepts, _score_encoder(x_BS, y_CB, known_CB, sel_B, ks)):
            c["by"][name] = scores
    return {"split": {"selection_images": int(sel_B.sum()), "scoring_images": int((~sel_B).sum()), "seed": int(ctx.seed),
                      "stratified_by": "class label"},
            "features": "per-image max of each unit over the image's tokens",
            "ks": list(ks), "l2": L2, "min_positives": min_pos, "skipped": skipped, "accuracy": "balanced accuracy (TPR + TNR) / 2 on the scoring half",
            "encoders": encoders, "concepts": concepts, "mean": _means(concepts, encoders, ks),
            "chance": _chance(concepts)}  # fmt: skip


def _concepts(es: Any, sel_B: np.ndarray, min_pos: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Concepts as {kind, value, positives, negatives, y_B, known_B}, and per kind how many were too rare."""
    tasks: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    labelled_B = es.label_B >= 0
    classes = np.unique(es.label_B[labelled_B])
    if len(classes) >= 2:
        for c in classes:
            name = es.class_names[c] if c < len(es.class_names) else str(int(c))
            tasks.append(("class", str(name), es.label_B == c, labelled_B))
    for factor, v_B in (es.factors_B or {}).items():
        v_B = np.asarray(v_B).astype(str)
        known_B = ~np.isin(v_B, UNKNOWN)
        values = np.unique(v_B[known_B])
        for v in values if len(values) >= 2 else ():
            tasks.append((str(factor), str(v), known_B & (v_B == v), known_B))
    if not tasks:
        raise Missing("sparse probing needs 2 labelled classes or generating factors, and the held-out images have neither",
                      "evaluate on a labelled dataset (a class-folder or labelled split)")  # fmt: skip
    out, skipped = [], {}
    for kind, value, y_B, known_B in tasks:
        pos = [int((y_B & h).sum()) for h in (sel_B, ~sel_B)]
        neg = [int((known_B & ~y_B & h).sum()) for h in (sel_B, ~sel_B)]
        if min(pos + neg) >= min_pos:
            out.append({"kind": kind, "value": value, "positives": {"selection": pos[0], "scoring": pos[1]},
                        "negatives": {"selection": neg[0], "scoring": neg[1]}, "y_B": y_B, "known_B": known_B})  # fmt: skip
        else:
            skipped[kind] = skipped.get(kind, 0) + 1
    if not out:
        raise Missing(f"no class or factor value has {min_pos} positive images in both halves of the {len(sel_B)} held-out images",
                      "evaluate on more held-out images (raise --max-images or pass a larger held-out store)")  # fmt: skip
    return out, skipped


def _score_encoder(x_BS: np.ndarray, y_CB: np.ndarray, known_CB: np.ndarray, sel_B: np.ndarray,
                   ks: tuple[int, ...]) -> list[dict[str, Any]]:  # fmt: skip
    """Per concept: best latent, its AP and probe1d accuracy on the scoring half, and the top-k probes."""
    mu_S = x_BS[sel_B].mean(0, dtype=np.float64)
    sd_S = x_BS[sel_B].std(0, dtype=np.float64)
    u_BS = ((x_BS - mu_S) / np.where(sd_S > 1e-12, sd_S, 1.0)).astype(np.float32)
    ap_CS = np.zeros((len(y_CB), x_BS.shape[1]))
    groups: dict[bytes, list[int]] = {}
    for c, known_B in enumerate(known_CB):  # concepts over the same images share one sort
        groups.setdefault(known_B.tobytes(), []).append(c)
    for idx in groups.values():
        a = known_CB[idx[0]] & sel_B
        ap_CS[idx] = average_precision(x_BS[a], y_CB[idx][:, a].T)
    pos_CB = y_CB * (known_CB & sel_B)
    neg_CB = (1 - y_CB) * (known_CB & sel_B)
    d_CS = (pos_CB / pos_CB.sum(1, keepdims=True).clip(1) - neg_CB / neg_CB.sum(1, keepdims=True).clip(1)) @ u_BS.astype(np.float64)
    out = []
    for y_B, known_B, ap_S, d_S in zip(y_CB, known_CB, ap_CS, d_CS):
        a, b = known_B & sel_B, known_B & ~sel_B
        best = int(np.argmax(ap_S))
        res: dict[str, Any] = {"best_latent": best, "ap_selection": float(ap_S[best]), "ap": ap(x_BS[b, best], y_B[b])}
        res["probe1d_acc"] = _probe(u_BS[:, [best]], y_B, a, b)["acc"]
        order_S = np.argsort(-d_S, kind="stable")
        res["topk"] = {str(k): _probe(u_BS[:, order_S[:k]], y_B, a, b) for k in ks}
        out.append(res)
    return out


def _probe(u_BK: np.ndarray, y_B: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """A balanced logistic probe fitted on images ``a``, scored on images ``b``: {acc, ap}."""
    w_K, bias = fit_logistic(u_BK[a], y_B[a], L2)
    s_B = u_BK[b] @ w_K + bias
    return {"acc": balanced_accuracy(s_B > 0, y_B[b] == 1), "ap": ap(s_B, y_B[b])}


def balanced_accuracy(pred_N: np.ndarray, true_N: np.ndarray) -> float:
    """(TPR + TNR) / 2 of boolean predictions; a missing class counts its rate as 0.5."""
    tpr = pred_N[true_N].mean() if true_N.any() else 0.5
    tnr = (~pred_N[~true_N]).mean() if (~true_N).any() else 0.5
    return float((tpr + tnr) / 2)


def fit_logistic(u_NK: np.ndarray, y_N: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """(w_K, b) of the class-balanced, L2-regularised logistic regression, by damped Newton steps."""
    n, k = u_NK.shape
    A = np.concatenate([u_NK, np.ones((n, 1))], 1)
    y = np.asarray(y_N, dtype=np.float64)
    n_pos, n_neg = max(y.sum(), 1.0), max(n - y.sum(), 1.0)
    c = np.where(y == 1, 0.5 / n_pos, 0.5 / n_neg)
    reg = np.r_[np.full(k, l2), 0.0]
    sign = 2 * y - 1

    def loss(t: np.ndarray) -> float:
        return float(c @ np.logaddexp(0, -sign * (A @ t)) + 0.5 * (reg * t * t).sum())

    t = np.zeros(k + 1)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(A @ t)))
        g = A.T @ (c * (p - y)) + reg * t
        if np.abs(g).max() < 1e-10:
            break
        H = (A * (c * p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-10 * np.eye(k + 1)
        step = np.linalg.solve(H, g)
        f0, lr = loss(t), 1.0
        while loss(t - lr * step) > f0 - 1e-4 * lr * (g @ step) and lr > 1e-6:
            lr /= 2
        t = t - lr * step
    return t[:k], float(t[k])


def _mean_of(rows: list[dict[str, Any]], name: str, ks: tuple[int, ...]) -> dict[str, Any]:
    by = [r["by"][name] for r in rows]
    m = lambda v: float(np.mean(v))  # noqa: E731
    return {"ap": m([b["ap"] for b in by]), "probe1d_acc": m([b["probe1d_acc"] for b in by]),
            "topk": {str(k): {q: m([b["topk"][str(k)][q] for b in by]) for q in ("acc", "ap")} for k in ks}}  # fmt: skip


def _kinds(concepts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Concepts by kind (class, each factor), plus every factor concept pooled as 'all factors'."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for c in concepts:
        kinds.setdefault(c["kind"], []).append(c)
    factors = [c for c in concepts if c["kind"] != "class"]
    if len({c["kind"] for c in factors}) > 1:
        kinds["all factors"] = factors
    return kinds


def _means(concepts: list[dict[str, Any]], encoders: list[str], ks: tuple[int, ...]) -> dict[str, Any]:
    return {kind: {"concepts": len(rows), **{e: _mean_of(rows, e, ks) for e in encoders}} for kind, rows in _kinds(concepts).items()}


def _chance(concepts: list[dict[str, Any]]) -> dict[str, Any]:
    return {kind: {"acc": 0.5, "ap": float(np.mean([c["chance_ap"] for c in rows]))} for kind, rows in _kinds(concepts).items()}


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per (concept kind, measure); SAE, baselines and chance as columns."""
    encs = result["encoders"]
    header = ["concepts", "measure", *encs, "chance"]
    rows = []
    for kind, m in result["mean"].items():
        ch = result["chance"][kind]
        label = f"{kind} ({m['concepts']})"
        rows.append([label, "best-latent AP", *[f"{m[e]['ap']:.3f}" for e in encs], f"{ch['ap']:.3f}"])
        rows.append([label, "probe1d bal. acc", *[f"{m[e]['probe1d_acc']:.3f}" for e in encs], "0.500"])
        for k in result["ks"]:
            rows.append([label, f"top-{k} bal. acc", *[f"{m[e]['topk'][str(k)]['acc']:.3f}" for e in encs], "0.500"])
    return header, rows


def headline(result: dict[str, Any]) -> dict[str, str]:
    """Best-latent AP and the largest top-k probe accuracy on classes and on factors, next to the baselines."""
    encs, k = result["encoders"], str(result["ks"][-1])
    out = {}
    for key, kind in (("classes", "class"), ("factors", "all factors")):
        if kind not in result["mean"] and key == "factors":
            kind = next((n for n in result["mean"] if n != "class"), "")
        if kind not in result["mean"]:
            if result.get("skipped", {}).get(kind):
                out[f"probing, {key}"] = f"{kind}: all {result['skipped'][kind]} concepts skipped (under {result['min_positives']} positive images in a half)"
            continue
        m, ch = result["mean"][kind], result["chance"][kind]
        aps = ", ".join(f"{e} {m[e]['ap']:.2f}" for e in encs[1:])
        acc = ", ".join(f"{e} {m[e]['topk'][k]['acc']:.2f}" for e in encs[1:])
        out[f"probing, {key}"] = (f"{kind} ({m['concepts']} concepts): best single latent AP {m[encs[0]]['ap']:.2f} ({aps}; chance {ch['ap']:.2f}); "
                                 f"top-{k} probe balanced acc {m[encs[0]]['topk'][k]['acc']:.2f} ({acc}; chance 0.50)")  # fmt: skip
    return out
