"""Reconstruction of held-out tokens by the saved, inference-time SAE (docs/metrics.md, "Reconstruction").

For held-out tokens x (T of them, width D), reconstructions x̂ and residuals r = x − x̂, with float64 sums:

    MSE                    Σ‖r‖² / (T·D)
    NMSE                   Σ‖r‖² / Σ‖x − x̄‖²
    explained variance     1 − Σ‖r − r̄‖² / Σ‖x − x̄‖²
    cosine similarity      mean over tokens of ⟨x, x̂⟩ / (‖x‖·‖x̂‖)
    L0, L1                 mean over tokens of the number of non-zero codes, of Σ_s z_s
    dead, dense            share of latents firing on no token, on more than 10% of tokens
    relative bias          ⟨x̂, x⟩-optimal scale: β = Σ⟨x̂, x⟩ / Σ‖x̂‖² (1: unbiased; < 1: x̂ too long;
                           > 1: shrinkage, the usual L1 bias; SAEBench's "relative reconstruction bias")

Baselines: a random-init SAE of the same shape (normalisation folded in as the trainer folds it), and
x̂ = the training tokens' mean for every token (NMSE ≈ 1: what a reconstruction must beat).
"""

from __future__ import annotations

from typing import Any

import torch

from visae.sae.evaluate import DENSE_RATE

CHUNK = 16_384


@torch.no_grad()
def reconstruction_of(sae: Any, acts_TD: torch.Tensor, mean_D: torch.Tensor | None = None) -> dict[str, Any]:
    """The measures of the module docstring for ``sae`` on ``acts_TD`` (``mean_D``: x̄ of the NMSE; default the tokens' own)."""
    from visae.analysis.inputs import encode

    device = next(sae.parameters()).device
    T, D = acts_TD.shape
    mean = acts_TD.double().mean(0) if mean_D is None else mean_D.double()
    sq_r = sq_c = dot = sq_h = cos = l0 = l1 = 0.0
    sum_r_D = torch.zeros(D, dtype=torch.float64)
    fired_S = torch.zeros(int(sae.d_sae), dtype=torch.int64)
    for a in range(0, T, CHUNK):
        x = acts_TD[a : a + CHUNK]
        z = encode(sae, x.to(device)).float()
        xh = (z @ sae.W_dec.float() + sae.b_dec.float()).double().cpu()
        z = z.cpu()
        x = x.double()
        r = x - xh
        sq_r += float(r.pow(2).sum())
        sum_r_D += r.sum(0)
        sq_c += float((x - mean).pow(2).sum())
        dot += float((x * xh).sum())
        sq_h += float(xh.pow(2).sum())
        cos += float(torch.nn.functional.cosine_similarity(x, xh, dim=1, eps=1e-12).sum())
        l0 += float((z > 0).sum())
        l1 += float(z.double().sum())
        fired_S += (z > 0).sum(0)
    var_r = sq_r - float(sum_r_D.pow(2).sum()) / max(T, 1)
    return {
        "tokens": T,
        "mse": sq_r / max(T * D, 1),
        "nmse": sq_r / max(sq_c, 1e-300),
        "explained_variance": 1.0 - var_r / max(sq_c, 1e-300),
        "cosine": cos / max(T, 1),
        "l0": l0 / max(T, 1),
        "l1": l1 / max(T, 1),
        "dead": float((fired_S == 0).double().mean()),
        "dense": float((fired_S > DENSE_RATE * T).double().mean()),
        "relative_bias": dot / sq_h if sq_h > 0 else None,
    }


def evaluate(ctx: Any) -> dict[str, Any]:
    """Reconstruction of the held-out tokens by the SAE, a random-init SAE of its shape, and the mean of the training tokens."""
    acts_TD = ctx.heldout.acts_TD
    mean_D = acts_TD.double().mean(0)
    out: dict[str, Any] = {"tokens": int(len(acts_TD)), "images": ctx.heldout.n_images, "heldout": ctx.how}
    out["sae"] = reconstruction_of(ctx.sae, acts_TD, mean_D)
    rand = ctx.random_sae()
    if not isinstance(rand, str):
        out["random_sae"] = reconstruction_of(rand, acts_TD, mean_D)
    train_mean_D = ctx.fit_sample().double().mean(0)
    sq_c = float((acts_TD.double() - mean_D).pow(2).sum())
    out["train_mean"] = {"nmse": float((acts_TD.double() - train_mean_D).pow(2).sum()) / max(sq_c, 1e-300)}
    return out


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys = ["mse", "nmse", "explained_variance", "cosine", "l0", "l1", "dead", "dense", "relative_bias"]
    rand = result.get("random_sae", {})
    rows = [[k, _f(result["sae"].get(k)), _f(rand.get(k))] for k in keys]
    rows.append(["nmse of x̂ = the training mean", _f(result["train_mean"]["nmse"]), ""])
    return ["measure", "SAE", "random-init SAE"], rows


def headline(result: dict[str, Any]) -> dict[str, str]:
    s, r = result["sae"], result.get("random_sae", {})
    return {"reconstruction": f"NMSE {_f(s['nmse'])} (random-init SAE {_f(r.get('nmse'))}, training mean "
                              f"{_f(result['train_mean']['nmse'])}), cosine {_f(s['cosine'])}, L0 {_f(s['l0'])}, "
                              f"dead {100 * s['dead']:.1f}%, relative bias {_f(s['relative_bias'])} on {result['tokens']:,} held-out tokens"}


def _f(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return "–"
    return f"{v:.4g}"
