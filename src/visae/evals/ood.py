"""Out-of-distribution detection (arXiv 2508.11277): do SAE codes tell images unlike the training data apart?

In-distribution (ID) images are the dataset's validation split; OOD images are its ``ood`` split (the
synthetic aircraft's withheld variants) or the split named by the ``ood_split`` option. Both go through
the model; reference statistics come from TRAINING images only (the store's split, disjoint from the ID
images). Per image, over its patch tokens x_1..x_G (G tokens, prefix tokens left out):

    m = (1/G) Σ_g x_g  (mean raw token)        z = (1/G) Σ_g f(x_g)  (mean code; f = SAE or baseline encoder)

Scores (higher = more OOD):

    recon      Σ_g ‖x_g − x̂_g‖² / Σ_g ‖x_g − μ‖²      x̂ = sae.decode(sae.encode(x)), μ the training token mean
    kl         KL(p ‖ q_ĉ) = Σ_s p_s log(p_s / q_ĉs)     p = (z/Σz + ε)/(1 + Sε), ε = 1e-6, ĉ = argmax logits,
                                                          q_c the same smoothing of the mean of z/Σz over training images of class c
    spearman   1 − ρ_Spearman(z, q_ĉ)                    ranks over the S units, ties averaged (constant vector: ρ = 0)
    knn        1 − cos(z, z'_(k))                         z'_(k) the k-th most similar training image, k = 10
    msp        −max_c softmax(logits)_c
    maxlogit   −max_c logits_c
    energy     −log Σ_c exp(logits_c)
    mahalanobis  min_c (m − μ_c)ᵀ Σ⁻¹ (m − μ_c)          class means μ_c, shared covariance Σ (+ 1e-6·tr Σ/D ridge)
                                                          over training images (Lee et al. 2018)
    knn_raw    1 − cos(m, m'_(k))                         the k-NN score on the mean raw token

kl, spearman and knn are computed for the SAE and, by the same code path, for each encoder baseline
(random_sae, raw, pca, kmeans). Training classes are the labels (the head's prediction where unlabelled).

Metrics (OOD = positive): AUROC = P(s_ood > s_id) + ½ P(s_ood = s_id) (rank form, ties averaged);
FPR@95 = share of ID images with s ≥ τ, τ the ⌈0.95·n_ood⌉-th largest OOD score (so ≥ 95% of OOD images
are caught). Chance: AUROC 0.5, FPR@95 0.95.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError
from visae.evals import scores
from visae.evals.context import BASELINES
from visae.evals.data import Missing

CHUNK_IMAGES = 128
"""Images per pass through the model."""
EPS = 1e-6
"""Profile smoothing."""
K_NN = 10
CODE_SCORES = ("kl", "spearman", "knn")
LOGIT_SCORES = ("msp", "maxlogit", "energy")
CHANCE = {"auroc": 0.5, "fpr95": 0.95}
DEFINITIONS = {
    "recon": "Σ_g‖x_g − x̂_g‖² / Σ_g‖x_g − μ‖² over the image's patch tokens (x̂: SAE reconstruction, μ: training token mean)",
    "kl": "KL(p ‖ q_ĉ): p = the image's mean code normalised to sum 1 (+1e-6 smoothing), "
    "q_ĉ = mean profile of the training images of the predicted class",
    "spearman": "1 − Spearman rank correlation of the image's mean code with q_ĉ over the units (ties averaged)",
    "knn": "cosine distance of the image's mean code to its 10th nearest training image",
    "msp": "−max softmax probability of the head",
    "maxlogit": "−max logit of the head",
    "energy": "−logsumexp of the head's logits",
    "mahalanobis": "min over classes of the squared Mahalanobis distance of the mean raw token "
    "(class means, shared covariance, ridge 1e-6·tr/D)",
    "knn_raw": "cosine distance of the mean raw token to its 10th nearest training image",
}


# --- metrics ---------------------------------------------------------------------------------------


def auroc(id_N: np.ndarray, ood_M: np.ndarray) -> float | None:
    """P(s_ood > s_id) + ½ P(s_ood = s_id), OOD the positive class (``scores.auroc``)."""
    s_N = np.concatenate([np.asarray(id_N, float), np.asarray(ood_M, float)])
    return scores.auroc(s_N, np.arange(len(s_N)) >= len(id_N))


def fpr_at_95(id_N: np.ndarray, ood_M: np.ndarray) -> float:
    """Share of ID scores ≥ τ, τ the ⌈0.95·M⌉-th largest OOD score."""
    k = (95 * len(ood_M) + 99) // 100
    tau = np.sort(np.asarray(ood_M, float))[::-1][k - 1]
    return float(np.mean(np.asarray(id_N, float) >= tau))


# --- scores ----------------------------------------------------------------------------------------


def profiles(z_BS: np.ndarray) -> np.ndarray:
    """Each row normalised to sum 1 (uniform where it is all zero)."""
    tot_B = z_BS.sum(1, keepdims=True)
    return np.where(tot_B > 0, z_BS / np.where(tot_B > 0, tot_B, 1.0), 1.0 / z_BS.shape[1])


def smooth(p_BS: np.ndarray) -> np.ndarray:
    return (p_BS + EPS) / (1.0 + EPS * p_BS.shape[1])


def class_profiles(z_NS: np.ndarray, y_N: np.ndarray, n_cls: int) -> np.ndarray:
    """``q_CS``: mean normalised profile of the training images of each class (all images' mean where a class has none)."""
    p_NS = profiles(z_NS)
    q_CS = np.tile(p_NS.mean(0), (n_cls, 1))
    for c in np.unique(y_N):
        q_CS[c] = p_NS[y_N == c].mean(0)
    return q_CS


def kl_score(z_BS: np.ndarray, q_BS: np.ndarray) -> np.ndarray:
    p_BS, q_BS = smooth(profiles(z_BS)), smooth(q_BS)
    return (p_BS * np.log(p_BS / q_BS)).sum(1)


def spearman_score(z_BS: np.ndarray, q_BS: np.ndarray) -> np.ndarray:
    """1 − ρ_Spearman per row (``scores.spearman``; ρ = 0 where a row is constant)."""
    rho_B = [scores.spearman(z_S, q_S) for z_S, q_S in zip(z_BS, q_BS)]
    return np.array([1.0 - (0.0 if r is None else r) for r in rho_B], dtype=np.float64)


def knn_score(bank_NS: np.ndarray, z_BS: np.ndarray, k: int = K_NN) -> np.ndarray:
    """Cosine distance to the k-th most similar bank row (a zero vector is at distance 1 from everything)."""
    def unit(a: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(a, axis=1, keepdims=True)
        return a / np.where(n > 0, n, 1.0)

    k = min(k, len(bank_NS))
    sim_BN = unit(z_BS) @ unit(bank_NS).T
    return 1.0 - np.sort(sim_BN, axis=1)[:, -k]


def logit_scores(logits_BC: np.ndarray) -> dict[str, np.ndarray]:
    mx_B = logits_BC.max(1)
    lse_B = mx_B + np.log(np.exp(logits_BC - mx_B[:, None]).sum(1))
    return {"msp": -np.exp(mx_B - lse_B), "maxlogit": -mx_B, "energy": -lse_B}


@dataclass
class Mahalanobis:
    """Class-conditional Gaussians with a shared covariance (Lee et al. 2018), fitted on training images."""

    mean_CD: np.ndarray
    prec_DD: np.ndarray

    @classmethod
    def fit(cls, m_ND: np.ndarray, y_N: np.ndarray) -> "Mahalanobis":
        classes = np.unique(y_N)
        mean_CD = np.stack([m_ND[y_N == c].mean(0) for c in classes])
        r_ND = m_ND - mean_CD[np.searchsorted(classes, y_N)]
        cov_DD = r_ND.T @ r_ND / len(m_ND)
        ridge = 1e-6 * max(float(np.trace(cov_DD)), 1e-12) / len(cov_DD)
        return cls(mean_CD, np.linalg.inv(cov_DD + ridge * np.eye(len(cov_DD))))

    def score(self, m_BD: np.ndarray) -> np.ndarray:
        d_CB = [np.einsum("bd,de,be->b", m_BD - mu, self.prec_DD, m_BD - mu) for mu in self.mean_CD]
        return np.min(np.stack(d_CB), axis=0)


# --- features --------------------------------------------------------------------------------------


@dataclass
class Features:
    """Per-image quantities of some images of one split."""

    split: str
    label_B: np.ndarray
    logits_BC: np.ndarray
    mean_BD: np.ndarray
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    """Encoder -> mean code per image (float64)."""
    recon_B: np.ndarray | None = None
    token_mean_D: np.ndarray | None = None


@torch.no_grad()
def features(s: Any, split: str, index_B: np.ndarray, encoders: dict[str, Any], mu_D: np.ndarray | None) -> Features:
    """Run ``index_B`` of ``split`` through the model: logits, mean raw token, mean codes, and (given μ) recon error."""
    labels, logits, means, recon = [], [], [], []
    codes: dict[str, list[np.ndarray]] = {name: [] for name in ["sae", *encoders]}
    tok_sum, n_tok = 0.0, 0
    dev = next(s.sae.parameters()).device
    for a in range(0, len(index_B), CHUNK_IMAGES):
        ims = s.images(split, index_B[a : a + CHUNK_IMAGES])
        labels.append(ims.label_B)
        logits.append(s.logits(ims.pixels_BCHW).double().numpy())
        x_BND = s.layer_tokens(ims.pixels_BCHW)
        p_BGD = x_BND[:, s.layout.n_prefix :].float()
        B, G, D = p_BGD.shape
        means.append(p_BGD.double().mean(1).numpy())
        tok_sum, n_tok = tok_sum + p_BGD.double().sum((0, 1)).numpy(), n_tok + B * G
        codes["sae"].append(s.patch_codes(x_BND).double().mean(1).numpy())
        flat_TD = p_BGD.reshape(-1, D)
        for name, enc in encoders.items():
            codes[name].append(enc.encode(flat_TD).reshape(B, G, -1).double().mean(1).numpy())
        if mu_D is not None:
            hat_TD = s.sae.decode(s.sae.encode(flat_TD.to(dev))).double().cpu()
            num_B = ((flat_TD.double() - hat_TD) ** 2).reshape(B, G, D).sum((1, 2))
            den_B = ((flat_TD.double() - torch.from_numpy(mu_D)) ** 2).reshape(B, G, D).sum((1, 2))
            recon.append((num_B / den_B.clamp_min(1e-30)).numpy())
    return Features(split, np.concatenate(labels), np.concatenate(logits), np.concatenate(means),
                    {k: np.concatenate(v) for k, v in codes.items()}, np.concatenate(recon) if recon else None,
                    tok_sum / max(n_tok, 1))  # fmt: skip


def fit_classes(fit: Features) -> np.ndarray:
    """Training image classes: the label, or the head's prediction where there is none."""
    n_cls = fit.logits_BC.shape[1]
    pred = fit.logits_BC.argmax(1)
    return np.where((fit.label_B >= 0) & (fit.label_B < n_cls), fit.label_B, pred)


def all_scores(fit: Features, test: Features) -> dict[str, np.ndarray]:
    """Every score of ``test``'s images, keyed ``sae:recon``, ``<encoder>:<code score>`` and the baselines' names."""
    y_N = fit_classes(fit)
    n_cls = fit.logits_BC.shape[1]
    pred_B = test.logits_BC.argmax(1)
    out: dict[str, np.ndarray] = {}
    if test.recon_B is not None:
        out["sae:recon"] = test.recon_B
    for name, z_BS in test.codes.items():
        q_BS = class_profiles(fit.codes[name], y_N, n_cls)[pred_B]
        out[f"{name}:kl"] = kl_score(z_BS, q_BS)
        out[f"{name}:spearman"] = spearman_score(z_BS, q_BS)
        out[f"{name}:knn"] = knn_score(fit.codes[name], z_BS)
    out.update(logit_scores(test.logits_BC))
    out["mahalanobis"] = Mahalanobis.fit(fit.mean_BD, y_N).score(test.mean_BD)
    out["knn_raw"] = knn_score(fit.mean_BD, test.mean_BD)
    return out


# --- the family ------------------------------------------------------------------------------------


def ood_split(ctx: Any, s: Any) -> str:
    """The OOD split: the ``ood_split`` option, else the dataset's non-empty ``ood`` split (else Missing)."""
    try:
        names = s.dataset.split_names()
    except VisaeError as e:
        raise Missing(f"the run's dataset cannot be opened ({e})", "evaluate a run whose dataset is readable") from None
    name = ctx.options.get("ood_split")
    if name is not None and str(name) not in names:
        raise Missing(f"the dataset has no split '{name}' (option ood_split)", f"set ood_split to one of: {', '.join(names)}")
    name = str(name) if name is not None else "ood"
    if name not in names or len(s.split(name)) == 0:
        raise Missing(f"{s.dataset_spec} has no OOD split (no images in an 'ood' split, no ood_split option)",
                      "set the ood option ood_split=SPLIT (images unlike the training classes), "
                      "or generate the synthetic aircraft with n_ood > 0")  # fmt: skip
    return name


def pick_images(s: Any, id_split: str, n_id: int, n_fit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training images for the reference statistics, ID images): disjoint when the ID split is the store's own."""
    if id_split != s.store_split:
        return s.sample_indices(s.store_split, n_fit, seed), s.sample_indices(id_split, n_id, seed + 1)
    perm = np.random.default_rng(seed).permutation(len(s.split(id_split)))
    n_fit = min(n_fit, len(perm) // 2)
    return np.sort(perm[:n_fit]), np.sort(perm[n_fit : n_fit + n_id])


def evaluate(ctx: Any) -> dict[str, Any]:
    s = ctx.steerer()
    out_split = ood_split(ctx, s)
    id_split = s.eval_split()
    if out_split in (id_split, s.store_split):
        raise Missing(f"the OOD split '{out_split}' is the ID or training split", "set ood_split to a split of other images")
    n_img, n_fit = int(ctx.options.get("ood_images", 512)), int(ctx.options.get("ood_fit_images", 1000))
    fit_idx, id_idx = pick_images(s, id_split, n_img, n_fit, int(ctx.seed))
    ood_idx = s.sample_indices(out_split, n_img, int(ctx.seed) + 2)
    encoders, notes = {}, []
    for name in ctx.options.get("OOD AUROC, baselines", BASELINES):
        try:
            encoders[name] = ctx.encoder(name)
        except (ValueError, VisaeError) as e:
            notes.append(f"baseline {name} left out: {e}")
    if id_split == s.store_split:
        notes.append(f"no validation split: the ID images are other images of the training split '{id_split}' (the SAE saw them)")
    if s.head.kind != "classifier":
        notes.append(f"the logit scores and the predicted class read {s.head.describe()}, not the model's own classifier")
    fit = features(s, s.store_split, fit_idx, encoders, None)
    sid = all_scores(fit, features(s, id_split, id_idx, encoders, fit.token_mean_D))
    sood = all_scores(fit, features(s, out_split, ood_idx, encoders, fit.token_mean_D))
    scores = {}
    for name in sid:
        a, f = auroc(sid[name], sood[name]), fpr_at_95(sid[name], sood[name])
        scores[name] = {"kind": "sae" if name.startswith("sae:") else "baseline", "auroc": _num(a), "fpr95": _num(f)}
    return {"id": {"split": id_split, "images": len(id_idx)}, "ood": {"split": out_split, "images": len(ood_idx)},
            "fit": {"split": s.store_split, "images": len(fit_idx)}, "fit_images": len(fit_idx), "k": K_NN,
            "head": {**s.head.to_json(), "what": s.head.describe()}, "scores": scores, "chance": dict(CHANCE),
            "definitions": dict(DEFINITIONS), "notes": notes}  # fmt: skip


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


# --- presentation ----------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def _order(name: str) -> tuple[int, int, int]:
    """SAE scores, then the encoder baselines score by score, then the logit and activation baselines."""
    kinds = ["recon", *CODE_SCORES, *LOGIT_SCORES, "mahalanobis", "knn_raw"]
    enc, _, score = name.rpartition(":")
    rank = kinds.index(score) if score in kinds else len(kinds)
    if not enc:
        return (2, rank, 0)
    return (0, rank, 0) if enc == "sae" else (1, rank, BASELINES.index(enc) if enc in BASELINES else len(BASELINES))


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows: each score; columns: AUROC and FPR@95 (OOD = positive), the SAE's scores first, then its baselines."""
    header = ["score", "kind", "AUROC", "FPR@95"]
    order = sorted(result["scores"], key=_order)
    rows = [[n, result["scores"][n]["kind"], _fmt(result["scores"][n]["auroc"]), _fmt(result["scores"][n]["fpr95"])] for n in order]
    rows.append(["chance", "", _fmt(CHANCE["auroc"]), _fmt(CHANCE["fpr95"])])
    return header, rows


def headline(result: dict[str, Any]) -> dict[str, str]:
    sc = result["scores"]

    def best(kind: str) -> str:
        names = [n for n in sc if sc[n]["kind"] == kind and sc[n]["auroc"] is not None]
        return max(names, key=lambda n: sc[n]["auroc"]) if names else ""

    def show(names: list[str]) -> str:
        return ", ".join(f"{n} {_fmt(sc[n]['auroc'])}" for n in names if n in sc)

    sae, base = best("sae"), best("baseline")
    where = f"{result['id']['split']} vs {result['ood']['split']}"
    out = {"OOD AUROC, SAE scores": f"OOD AUROC ({where}): {show([n for n in sc if n.startswith('sae:')])} (chance 0.5)",
           "OOD AUROC, baselines": f"baselines: {show(['energy', 'msp', 'mahalanobis', 'knn_raw', 'random_sae:knn', 'kmeans:knn'])}"}  # fmt: skip
    if sae and base:
        out["OOD, best SAE score vs best baseline"] = (f"best SAE score {sae}: AUROC {_fmt(sc[sae]['auroc'])}, FPR@95 {_fmt(sc[sae]['fpr95'])} vs best baseline "
                           f"{base}: {_fmt(sc[base]['auroc'])}, {_fmt(sc[base]['fpr95'])} (chance 0.95)")  # fmt: skip
    return out
