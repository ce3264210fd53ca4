"""Stability: does a second SAE (another seed, width, layer or backbone) learn the same latents? (SAE-V's study)

The evaluated SAE is A (``ctx``), the other is B (``ctx.options["compare"]``, an ``EvalContext`` on the same
held-out images, same ids in the same order).

Decoder similarity (same backbone, layer and width only). With unit decoder rows u_i = W_dec[i]/‖W_dec[i]‖:
    C_ij = u_i^A · u_j^B,   π = argmax_{one-to-one π} Σ_i C_{i π(i)}   (Hungarian, min(S_A, S_B) pairs)
    mean_cos = mean_i C_{i π(i)},   share_0.7 = #{i : C_{i π(i)} > 0.7} / #pairs
Baselines: A vs a random-init SAE of A's spec (seed s₁ = 104729 + ctx.seed), and two random-init SAEs (s₁, s₁+1).
(Not seed ctx.seed: the trainer seeds its initialisation with the run's seed, 0 by default, so a random-init SAE
of that seed is the SAE's own starting point, not an independent one.)

Activation correlation (any two SAEs). Samples n are the held-out tokens when both token sets are identical
(same images, grid and cells), else the images with each unit's per-image max. The images are split 50/50
(seeded, stratified by label: ``scores.split_halves``) into a selection half Σ and a scoring half Ω:
    j*(i) = argmax_j r_Σ(a_i, b_j)          (counterpart chosen on Σ)
    ρ_i   = r_Ω(a_i, b_{j*(i)})             (scored on Ω; Pearson r, 0 when a unit is constant)
    a_to_b.share = #{i : ρ_i ≥ τ} / S_A     (τ = options["threshold"], 0.5);  b_to_a symmetric
Baseline: the same with B replaced by the random-init SAE of seed s₁.

Abstractions of A's latents, split by matched (ρ_i ≥ τ) vs unmatched, on all held-out images:
    part-selective:   more than half of the top-16 tokens (counting active ones only) on one non-background part
    level ℓ:          m_c = mean over images of class c of the per-image max; for the groups g of classes at
                      hierarchy level ℓ (leaf: the classes), M_g = mean_{c∈g} m_c, share_ℓ = max_g M_g / Σ_g M_g
                      (a latent equal on every class: 1/#groups at every level); a latent's level is the lowest ℓ
                      with share_ℓ > 0.5 (class-selective: the leaf; above-leaf: a higher level), else none.
Baseline: the same shares over the random-init SAE's latents.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from visae.analysis.baselines import RANDOM_INIT_SEED

from visae.evals.data import EvalSet, Missing
from visae.evals.scores import split_halves

THRESHOLD = 0.5
"""Default ρ a latent needs for a counterpart."""
COS = 0.7
"""Decoder cosine counted as a match."""
TOP_K = 16
"""Top tokens read for part selectivity."""
SELECTIVE = 0.5
"""Share of the top tokens or of the class-mean mass a latent must exceed to be selective (strictly: two equal
groups do not make it)."""
BLOCK = 1024
"""Latents per block of the correlation matrix."""
BINS = np.linspace(-1.0, 1.0, 21)


# ---------------------------------------------------------------- matching


def hungarian(score_NM: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows, cols, method): the one-to-one pairs maximising the total score (scipy when it imports)."""
    score = np.asarray(score_NM, dtype=np.float64)
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        if score.shape[0] <= score.shape[1]:
            return np.arange(score.shape[0]), hungarian_min(-score), "numpy"
        return hungarian_min(-score.T), np.arange(score.shape[1]), "numpy"
    rows, cols = linear_sum_assignment(score, maximize=True)
    return rows, cols, "scipy"


def hungarian_min(cost_NM: np.ndarray) -> np.ndarray:
    """``col_N``: the column of each row minimising the total cost, N ≤ M (shortest augmenting paths with
    potentials, Jonker–Volgenant style; the inner loop over columns in numpy, ~15 s at 4096²)."""
    cost = np.asarray(cost_NM, dtype=np.float64)
    n, m = cost.shape
    u_N, v_M = np.zeros(n + 1), np.zeros(m + 1)
    row_of = np.zeros(m + 1, dtype=np.int64)  # 1-based row on column j; column 0 is the path's virtual start
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        row_of[0], j0 = i, 0
        minv, used = np.full(m + 1, np.inf), np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0, free = row_of[j0], ~used[1:]
            cur = cost[i0 - 1] - u_N[i0] - v_M[1:]
            better = free & (cur < minv[1:])
            minv[1:][better], way[1:][better] = cur[better], j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(cand.argmin()) + 1
            delta = cand[j1 - 1]
            u_N[row_of[used]] += delta
            v_M[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            row_of[j0], j0 = row_of[j1], j1
    col_N = np.empty(n, dtype=np.int64)
    js = np.flatnonzero(row_of[1:])
    col_N[row_of[1:][js] - 1] = js
    return col_N


def unit_rows(W_SD: torch.Tensor) -> np.ndarray:
    W = W_SD.detach().double().cpu().numpy()
    return W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)


def decoder_match(U_AD: np.ndarray, U_BD: np.ndarray) -> dict[str, Any]:
    cos_AB = U_AD @ U_BD.T
    rows, cols, method = hungarian(cos_AB)
    c = cos_AB[rows, cols]
    return {"mean_cos": float(c.mean()), f"share_{COS}": float((c > COS).mean()), "pairs": int(len(c)), "method": method}


def random_init(ctx: Any, seed: int, normalised: bool = False) -> Any:
    """A random-init SAE of the evaluated SAE's spec (its run's normalisation folded in when ``normalised``;
    for decoder directions it only rescales the rows), or why there is none."""
    from visae.analysis.baselines import random_sae, run_normalisation

    mean_D, scale = torch.zeros(int(ctx.sae.d_in)), 1.0
    if normalised and not isinstance(random_sae(ctx.sae, mean_D, scale, seed), str):
        default_scale = float(ctx.train_store.scale) if getattr(ctx, "train_store", None) is not None else 1.0
        mean_D, scale = run_normalisation(ctx.run.normalization, ctx.fit_sample().double().mean(0).float(), default_scale)
    return random_sae(ctx.sae, mean_D, scale, seed)


def random_codes(ctx: Any) -> torch.Tensor | str:
    """``codes_TS`` of the held-out tokens under the random-init SAE of seed s₁, or why there are none."""
    from visae.evals.encoders import sae_encoder

    rand = random_init(ctx, int(ctx.seed), normalised=True)
    if isinstance(rand, str):
        return rand
    return sae_encoder(rand.to(next(ctx.sae.parameters()).device), "random_sae").encode(ctx.heldout.acts_TD)


def random_decoder(ctx: Any, seed: int) -> np.ndarray | str:
    rand = random_init(ctx, seed)
    return rand if isinstance(rand, str) else unit_rows(rand.W_dec)


def decoder_section(ctx: Any, other: Any) -> dict[str, Any]:
    U_A, U_B = unit_rows(ctx.sae.W_dec), unit_rows(other.sae.W_dec)
    out = decoder_match(U_A, U_B)
    r1, r2 = random_decoder(ctx, int(ctx.seed)), random_decoder(ctx, int(ctx.seed) + 1)
    if isinstance(r1, str) or isinstance(r2, str):
        return out | {"random_init": {"reason": r1 if isinstance(r1, str) else r2}, "two_random": {"reason": str(r2)}}
    return out | {"random_init": decoder_match(U_A, r1), "two_random": decoder_match(r1, r2)}


# ---------------------------------------------------------------- activation correlation


def _moments(x_NS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean_S = x_NS.double().mean(0)
    std_S = (x_NS.double() - mean_S).pow(2).mean(0).sqrt()
    return mean_S, std_S


def _z(x_NS: torch.Tensor, mean_S: torch.Tensor, std_S: torch.Tensor) -> torch.Tensor:
    """Standardised columns; a constant column becomes 0 (r = 0 with anything)."""
    return torch.where(std_S > 1e-12, (x_NS.double() - mean_S) / std_S.clamp_min(1e-12), torch.zeros((), dtype=torch.float64))


def best_counterparts(x_NA: torch.Tensor, y_NB: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(j*_A, i*_B): each column's most correlated column of the other matrix (Pearson, float64, by blocks)."""
    n = len(x_NA)
    mx, sx = _moments(x_NA)
    my, sy = _moments(y_NB)
    best_a = torch.full((x_NA.shape[1],), -2.0, dtype=torch.float64)
    arg_a = torch.zeros(x_NA.shape[1], dtype=torch.long)
    best_b = torch.full((y_NB.shape[1],), -2.0, dtype=torch.float64)
    arg_b = torch.zeros(y_NB.shape[1], dtype=torch.long)
    for a in range(0, x_NA.shape[1], BLOCK):
        zx = _z(x_NA[:, a : a + BLOCK], mx[a : a + BLOCK], sx[a : a + BLOCK])
        for b in range(0, y_NB.shape[1], BLOCK):
            r_ab = zx.T @ _z(y_NB[:, b : b + BLOCK], my[b : b + BLOCK], sy[b : b + BLOCK]) / max(n, 1)
            v, j = r_ab.max(1)
            upd = v > best_a[a : a + BLOCK]
            best_a[a : a + BLOCK] = torch.where(upd, v, best_a[a : a + BLOCK])
            arg_a[a : a + BLOCK] = torch.where(upd, j + b, arg_a[a : a + BLOCK])
            v, i = r_ab.max(0)
            upd = v > best_b[b : b + BLOCK]
            best_b[b : b + BLOCK] = torch.where(upd, v, best_b[b : b + BLOCK])
            arg_b[b : b + BLOCK] = torch.where(upd, i + a, arg_b[b : b + BLOCK])
    return arg_a.numpy(), arg_b.numpy()


def paired_r(x_NA: torch.Tensor, y_NB: torch.Tensor, j_A: np.ndarray) -> np.ndarray:
    """``r_A``: Pearson r of column i of x with column j_A[i] of y (0 when either is constant)."""
    out = np.zeros(x_NA.shape[1])
    for a in range(0, x_NA.shape[1], BLOCK):
        x, y = x_NA[:, a : a + BLOCK], y_NB[:, torch.from_numpy(j_A[a : a + BLOCK])]
        out[a : a + BLOCK] = (_z(x, *_moments(x)) * _z(y, *_moments(y))).mean(0).numpy()
    return out


def direction(r_S: np.ndarray, tau: float) -> dict[str, Any]:
    n = int((r_S >= tau).sum())
    return {"share": n / len(r_S) if len(r_S) else None, "n": n, "of": int(len(r_S)), "mean_r": float(r_S.mean()) if len(r_S) else None,
            "hist": np.histogram(np.clip(r_S, -1, 1), BINS)[0].tolist()}  # fmt: skip


def correlate(x_NA: torch.Tensor, y_NB: torch.Tensor, sel_N: np.ndarray, tau: float) -> tuple[dict[str, Any], np.ndarray]:
    """({a_to_b, b_to_a}, ρ_A): counterparts chosen on the selection samples, r scored on the others."""
    s, o = torch.from_numpy(sel_N), torch.from_numpy(~sel_N)
    j_A, i_B = best_counterparts(x_NA[s], y_NB[s])
    rho_A, rho_B = paired_r(x_NA[o], y_NB[o], j_A), paired_r(y_NB[o], x_NA[o], i_B)
    return {"a_to_b": direction(rho_A, tau), "b_to_a": direction(rho_B, tau)}, rho_A


def sample_view(a: EvalSet, b: EvalSet) -> tuple[str, Callable[[torch.Tensor, EvalSet], torch.Tensor], np.ndarray]:
    """(unit, codes_TS -> samples, image of each sample): tokens when both token sets are identical, else images."""
    same = a.grid == b.grid and np.array_equal(a.image_T, b.image_T) and np.array_equal(a.cell_T, b.cell_T)
    if same:
        return "token", lambda c, es: c.float(), a.image_T
    return "image (per-image max)", lambda c, es: es.per_image_max(c.float()), np.arange(a.n_images)


# ---------------------------------------------------------------- abstractions


def part_selective(codes_TS: torch.Tensor, parts_T: np.ndarray) -> np.ndarray:
    """``sel_S``: more than SELECTIVE of the TOP_K top tokens (active ones only) on one non-background part."""
    k = min(TOP_K, len(codes_TS))
    val_KS, idx_KS = codes_TS.float().topk(k, dim=0)
    parts_KS, active_KS = parts_T[idx_KS.numpy()], val_KS.numpy() > 0
    best_S = np.zeros(codes_TS.shape[1], dtype=np.int64)
    for p in range(1, int(parts_T.max(initial=0)) + 1):
        best_S = np.maximum(best_S, ((parts_KS == p) & active_KS).sum(0))
    return best_S > SELECTIVE * TOP_K


def class_levels(codes_TS: torch.Tensor, es: EvalSet) -> tuple[np.ndarray, list[str]]:
    """(level_S, level names): the lowest level whose top group holds > SELECTIVE of the group-mean mass, -1 none."""
    labels = es.label_B >= 0
    classes = np.unique(es.label_B[labels])
    if len(classes) < 2:
        raise ValueError("fewer than two labelled classes")
    max_BS = es.per_image_max(codes_TS.float()).double().numpy()
    m_CS = np.stack([max_BS[es.label_B == c].mean(0) for c in classes])
    groups = [("class", classes.astype(str))]
    h = es.hierarchy
    if h is not None and es.class_names:
        for lv in h.levels[1:]:
            try:
                groups.append((lv, np.array([h.ancestor(es.class_names[c], lv) for c in classes])))
            except (KeyError, IndexError):
                break
    level_S = np.full(m_CS.shape[1], -1)
    names = []
    for li, (lv, g_C) in enumerate(g for g in groups if len(set(g[1])) >= 2):
        mass_GS = np.stack([m_CS[g_C == g].mean(0) for g in np.unique(g_C)])
        total_S = mass_GS.sum(0)
        hit = (total_S > 0) & (mass_GS.max(0) > SELECTIVE * total_S) & (level_S < 0)
        level_S[hit] = li
        names.append(lv)
    return level_S, names


def group_stats(mask_S: np.ndarray, part_S: np.ndarray | None, level_S: np.ndarray | None, names: list[str]) -> dict[str, Any]:
    n = int(mask_S.sum())
    frac = (lambda m: float(m[mask_S].mean()) if n else None)  # noqa: E731
    out: dict[str, Any] = {"n": n, "part_selective": frac(part_S) if part_S is not None else None}
    if level_S is not None:
        out["class_selective"] = frac(level_S == 0)
        out["above_leaf"] = {lv: frac(level_S == li) for li, lv in enumerate(names) if li > 0}
        out["none"] = frac(level_S < 0)
    return out


def abstractions(ctx: Any, matched_S: np.ndarray, rand_TS: torch.Tensor | str) -> dict[str, Any]:
    es = ctx.heldout
    out: dict[str, Any] = {"definition": f"part: > {SELECTIVE:.0%} of the top-{TOP_K} tokens active on one part; "
                           f"level: lowest hierarchy level whose top group has > {SELECTIVE:.0%} of the group-mean per-class mean max"}  # fmt: skip
    if es.parts_T is None:
        out["part_reason"] = "no part masks"
    todo = [(ctx.codes("sae"), {"matched": matched_S, "unmatched": ~matched_S})]
    if isinstance(rand_TS, str):
        out["random_init"] = {"reason": rand_TS}
    else:
        todo.append((rand_TS, {"random_init": np.ones(rand_TS.shape[1], bool)}))
    for codes, groups in todo:
        part_S = part_selective(codes, es.parts_T) if es.parts_T is not None else None
        try:
            level_S, names = class_levels(codes, es)
        except ValueError as e:
            level_S, names, out["class_reason"] = None, [], str(e)
        out |= {key: group_stats(mask, part_S, level_S, names) for key, mask in groups.items()}
    return out


# ---------------------------------------------------------------- the family


def evaluate(ctx: Any) -> dict[str, Any]:
    other = ctx.options.get("compare")
    if other is None:
        raise Missing("no second SAE to compare", "pass --compare RUN2")
    a, b = ctx.heldout, other.heldout
    if list(a.ids) != list(b.ids):
        raise Missing("the two SAEs were evaluated on different held-out images",
                      "evaluate both on the same held-out images, same ids in the same order (the same --store)")  # fmt: skip
    tau = float(ctx.options.get("threshold", THRESHOLD))
    where = (lambda c: (str(c.run.backbone), str(c.run.layer), int(c.sae.d_in)))  # noqa: E731
    same_layer = where(ctx) == where(other)
    unit, view, image_N = sample_view(a, b)
    sel_B = split_halves(a.label_B, ctx.seed)
    if min(sel_B.sum(), (~sel_B).sum()) < 2:
        raise Missing(f"only {a.n_images} held-out images: too few to split into selection and scoring halves",
                      "evaluate on a held-out store of at least 4 images")  # fmt: skip
    sel_N = sel_B[image_N]
    x = view(ctx.codes("sae"), a)
    act, rho_A = correlate(x, view(other.codes("sae"), b), sel_N, tau)
    rand_TS = random_codes(ctx)
    act_r = {"reason": rand_TS} if isinstance(rand_TS, str) else correlate(x, view(rand_TS, a), sel_N, tau)[0]
    return {
        "mode": "same_layer" if same_layer else "cross",
        "other": str(other.run.path),
        "latents": {"a": int(ctx.sae.d_sae), "b": int(other.sae.d_sae)},
        "decoder": decoder_section(ctx, other) if same_layer else {"reason": "another backbone, layer or width"},
        "activation": {"threshold": tau, "samples": unit, "n_selection": int(sel_N.sum()), "n_scoring": int((~sel_N).sum()),
                       "split": {"by": "image", "stratified_by": "label", "seed": int(ctx.seed)}, "hist_edges": BINS.tolist(),
                       "random_seed": RANDOM_INIT_SEED + int(ctx.seed), **act, "random_init": act_r},  # fmt: skip
        "abstractions": abstractions(ctx, rho_A >= tau, rand_TS),
    }


# ---------------------------------------------------------------- presentation


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _cos(d: dict[str, Any]) -> str:
    return "n/a" if "mean_cos" not in d else f"{d['mean_cos']:.3f} ({_pct(d[f'share_{COS}'])} > {COS})"


def _share_r(d: dict[str, Any]) -> str:
    return f"{_pct(d['share'])} (mean r {d['mean_r']:.3f})" if "share" in d else f"n/a ({d.get('reason', '')})"


def _measures(ab: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """(key path, name) of each abstraction measure present."""
    out = [(("part_selective",), "part"), (("class_selective",), "class")]
    return out + [(("above_leaf", lv), lv) for lv in ab["matched"].get("above_leaf", {})]


def _get(group: dict[str, Any], key: tuple[str, ...]) -> Any:
    for k in key:
        group = group.get(k) if isinstance(group, dict) else None
    return group


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["measure", "SAE vs other SAE", "SAE vs random-init SAE", "two random-init SAEs"]
    rows = []
    dec = result["decoder"]
    if "mean_cos" in dec:
        rows.append([f"decoder: mean matched cosine (share > {COS})", _cos(dec), _cos(dec["random_init"]), _cos(dec["two_random"])])
    act, rnd = result["activation"], result["activation"]["random_init"]
    for d, name in (("a_to_b", "this→other"), ("b_to_a", "other→this")):
        rows.append([f"activation {name}: share with held-out r ≥ {act['threshold']}", _share_r(act[d]), _share_r(rnd.get(d, rnd)), ""])
    ab = result["abstractions"]
    for key, name in _measures(ab):
        rows.append([f"{name}-selective: matched / unmatched latents", f"{_pct(_get(ab['matched'], key))} / {_pct(_get(ab['unmatched'], key))}",
                     f"{_pct(_get(ab['random_init'], key))} (all latents)", ""])  # fmt: skip
    return header, rows


def headline(result: dict[str, Any]) -> dict[str, str]:
    out = {}
    dec = result["decoder"]
    if "mean_cos" in dec:
        out["decoder"] = (f"decoder mean matched cosine {_cos(dec)} vs random-init SAE {_cos(dec['random_init'])} "
                          f"vs two random-init SAEs {_cos(dec['two_random'])}")  # fmt: skip
    act, rnd = result["activation"], result["activation"]["random_init"]
    out["activation"] = (f"latents with a counterpart (held-out r ≥ {act['threshold']}) in the other SAE: {_pct(act['a_to_b']['share'])} "
                         f"vs {_pct(rnd.get('a_to_b', {}).get('share'))} in a random-init SAE; other→this {_pct(act['b_to_a']['share'])}")  # fmt: skip
    m, u = result["abstractions"]["matched"], result["abstractions"]["unmatched"]
    out["abstractions"] = (f"part-selective: matched {_pct(m['part_selective'])} vs unmatched {_pct(u['part_selective'])}; "
                           f"class-selective: matched {_pct(m.get('class_selective'))} vs unmatched {_pct(u.get('class_selective'))}")  # fmt: skip
    return out


def plot(result: dict[str, Any], path: Any) -> str | None:
    """A PNG: the held-out r of each latent's counterpart (vs random-init), and the abstractions by group;
    None when written, else why not (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no stability plot (pip install matplotlib)"
    from visae.atomic import write_with

    act, ab = result["activation"], result["abstractions"]
    fig, (h, bars) = plt.subplots(1, 2, figsize=(10, 3.6))
    mid = (np.array(act["hist_edges"][:-1]) + np.array(act["hist_edges"][1:])) / 2
    for d, label in ((act["a_to_b"], "other SAE"), (act["random_init"].get("a_to_b"), "random-init SAE")):
        if d is not None:
            h.step(mid, np.array(d["hist"]) / max(d["of"], 1), where="mid", label=label)
    h.axvline(act["threshold"], color="grey", ls="--")
    h.set(xlabel="held-out r of the counterpart", ylabel="share of latents", title="activation counterparts")
    h.legend()
    measures = _measures(ab)
    for gi, g in enumerate(("matched", "unmatched", "random_init")):
        vals = [_get(ab[g], k) or 0.0 for k, _ in measures]
        bars.bar(np.arange(len(measures)) + (gi - 1) * 0.27, vals, 0.27, label=f"{g} (n={ab[g].get('n', 0)})")
    bars.set_xticks(np.arange(len(measures)), [n for _, n in measures])
    bars.set(ylabel="share selective", title="abstractions of the latents")
    bars.legend(fontsize=8)
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    return None
