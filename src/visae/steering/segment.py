"""The SAE-V segmentation protocol: does suppressing a part's latent change a patch probe's reading
of that part, and of nothing else? (docs/steering.md)

1. A linear patch probe reads a part label off each patch token of the SAE's layer:
   ``p(x) = argmax_c W_c·(x − μ)/σ + b_c`` (multinomial logistic, ``visae.steering.head.fit_logistic``,
   μ, σ the training patches' mean and std), trained on images of the store's split, its
   accuracy reported on the held-out evaluation images.
2. Per part c, the latent with the best patch-level F1 on the training images, latent s
   predicting c where z_s > 0:  ``F1(s, c) = 2·TP / (2·TP + FP + FN) = 2·|A_s ∩ C| / (|A_s| + |C|)``.
3. The latent is set to ``scale · max_s`` (default −2× its largest activation) on every patch:
   ``x' = x + (z_edit − z)·W_dec[s] = x + (scale·max_s − z_s)·W_dec[s]``, the splice's edit formula
   (``visae.steering.splice.splice_tokens``), computed from the codes already at hand.
4. On the evaluation patches, with Δ = [p(x') ≠ p(x)]:
   ``target_change = mean Δ over the patches labelled c``, ``other_change = mean Δ over all others``.
   Baselines: a random alive latent r ≠ s edited the same way (its own ``scale · max_r``, its own
   W_dec[r]), and a random direction u (Gaussian, ``‖u‖ = ‖W_dec[s]‖``) moved by s's coefficients.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visae.errors import VisaeError
from visae.progress import info
from visae.steering.head import fit_logistic

PROBE_PATCHES = 200_000
"""At most this many training patches (a seeded random subset) fit the probe; the F1 counts use them all."""
CHUNK = 32
"""Training images per pass (their dense codes, CHUNK·G·S floats, are held at once)."""
PREDICT = 65_536
"""Patches per probe matmul."""
RATES = ("target_change", "other_change")


@dataclass
class PatchProbe:
    """A linear probe from one patch token to its part: ``argmax_P W_PD·(x − mean_D)/std_D + b_P``."""

    weight_PD: torch.Tensor
    bias_P: torch.Tensor
    mean_D: torch.Tensor
    std_D: torch.Tensor
    part_names: list[str]
    train_patches: int
    heldout_accuracy: float
    heldout_patches: int

    @torch.no_grad()
    def predict(self, x_TD: torch.Tensor) -> torch.Tensor:
        """(T,) part ids (int64, CPU)."""
        out = [torch.zeros(0, dtype=torch.int64)]
        for a in range(0, len(x_TD), PREDICT):
            f_TD = (x_TD[a : a + PREDICT].float().cpu() - self.mean_D) / self.std_D
            out.append((f_TD @ self.weight_PD.T + self.bias_P).argmax(1))
        return torch.cat(out)


def part_names_for(names: list[str] | None, n_parts: int) -> list[str]:
    """``names`` extended to ``n_parts`` ids: 0 without a name is 'background', others 'part_<id>'."""
    names = list(names or [])
    return names + ["background" if i == 0 else f"part_{i}" for i in range(len(names), n_parts)]


def train_patch_probe(x_BGD: torch.Tensor, parts_BG: Any, part_names: list[str], heldout_x_BGD: torch.Tensor,
                      heldout_parts_BG: Any) -> PatchProbe:  # fmt: skip
    """Fit the probe on the patches of ``x_BGD`` (standardised by their mean and std, L2 0.01, L-BFGS)
    and score its accuracy on the held-out patches."""
    x_TD, y_T = _flat(x_BGD, parts_BG)
    hx_TD, hy_T = _flat(heldout_x_BGD, heldout_parts_BG)
    if len(y_T) == 0:
        raise VisaeError("no training patches for the patch probe", "train it on more images")
    n_parts = max(len(part_names), int(y_T.max()) + 1, int(hy_T.max()) + 1 if len(hy_T) else 0)
    mean_D, std_D = x_TD.mean(0), x_TD.std(0).clamp_min(1e-6)
    w_PD, b_P = fit_logistic((x_TD - mean_D) / std_D, y_T, n_parts)
    probe = PatchProbe(w_PD, b_P, mean_D, std_D, part_names_for(part_names, n_parts), len(y_T), float("nan"), len(hy_T))
    if len(hy_T):
        probe.heldout_accuracy = float((probe.predict(hx_TD) == hy_T).float().mean())
    return probe


def _flat(x_BGD: torch.Tensor, parts_BG: Any) -> tuple[torch.Tensor, torch.Tensor]:
    y_T = torch.as_tensor(np.asarray(parts_BG), dtype=torch.int64).reshape(-1)
    x_TD = x_BGD.reshape(-1, x_BGD.shape[-1]).float().cpu()
    if len(x_TD) != len(y_T):
        raise VisaeError(f"{len(x_TD)} patch tokens but {len(y_T)} part labels", "pass the labels of the same images and grid")
    return x_TD, y_T


@dataclass
class PartCounts:
    """Patch counts for the F1 of every (part, latent): ``tp_PS`` patches of part p where s fires,
    ``active_S`` patches where s fires, ``n_P`` patches of part p. F1 = 2·tp / (active + n)."""

    d_sae: int
    tp_PS: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    active_S: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_P: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, codes_BGS: torch.Tensor, parts_BG: Any) -> None:
        active_TS = (codes_BGS.reshape(-1, self.d_sae) > 0).float().cpu()
        y_T = torch.as_tensor(np.asarray(parts_BG), dtype=torch.int64).reshape(-1)
        n_parts = max(len(self.n_P), int(y_T.max()) + 1 if len(y_T) else 0)
        onehot_TP = torch.nn.functional.one_hot(y_T, n_parts).float()
        self._grow(n_parts)
        self.tp_PS += (onehot_TP.T @ active_TS).round().numpy().astype(np.int64)
        self.active_S += active_TS.sum(0).round().numpy().astype(np.int64)
        self.n_P += np.bincount(y_T.numpy(), minlength=n_parts)

    def _grow(self, n_parts: int) -> None:
        if len(self.active_S) == 0:
            self.active_S = np.zeros(self.d_sae, dtype=np.int64)
        grow = n_parts - len(self.n_P)
        if grow > 0:
            self.tp_PS = np.concatenate([self.tp_PS.reshape(-1, self.d_sae), np.zeros((grow, self.d_sae), dtype=np.int64)])
            self.n_P = np.concatenate([self.n_P, np.zeros(grow, dtype=np.int64)])

    def f1_PS(self) -> np.ndarray:
        denom_PS = self.active_S[None, :] + self.n_P[:, None]
        return np.where(denom_PS > 0, 2 * self.tp_PS / np.maximum(denom_PS, 1), 0.0)

    def best(self, min_patches: int = 20) -> dict[int, tuple[int, float]]:
        """Part id (not background 0, at least ``min_patches`` patches, some latent firing on it) -> (latent, F1)."""
        f1_PS = self.f1_PS()
        out = {}
        for p in range(1, len(self.n_P)):
            s = int(f1_PS[p].argmax())
            if self.n_P[p] >= min_patches and f1_PS[p, s] > 0:
                out[p] = (s, float(f1_PS[p, s]))
        return out


def best_latents(codes_BGS: torch.Tensor, parts_BG: Any, part_names: list[str], min_patches: int = 20) -> dict[int, tuple[int, float]]:
    """Per part (not background 0, only parts with >= ``min_patches`` labelled patches) the latent of best
    patch-level F1, a latent predicting the part where it is active (> 0): part id -> (latent, F1)."""
    counts = PartCounts(int(codes_BGS.shape[-1]))
    counts._grow(len(part_names))
    counts.add(codes_BGS, parts_BG)
    return counts.best(min_patches)


def suppressed(x_TD: torch.Tensor, z_T: torch.Tensor, value: float, dir_D: torch.Tensor) -> torch.Tensor:
    """``x' = x + (value − z)·d``: the tokens after setting one latent (activations ``z_T``, decoder row
    ``d``) to ``value`` on every patch, as ``splice_tokens`` computes it."""
    return x_TD + (value - z_T.float())[:, None] * dir_D.float()[None, :]


def change_rates(probe: PatchProbe, x_TD: torch.Tensor, before_T: torch.Tensor, z_T: torch.Tensor, value: float,
                 dir_D: torch.Tensor, target_T: torch.Tensor) -> tuple[float | None, float | None]:  # fmt: skip
    """(target_change, other_change): the share of target / other patches whose predicted part changes."""
    changed = [torch.zeros(0, dtype=torch.bool)]
    for a in range(0, len(x_TD), PREDICT):
        after_T = probe.predict(suppressed(x_TD[a : a + PREDICT], z_T[a : a + PREDICT], value, dir_D))
        changed.append(after_T != before_T[a : a + PREDICT])
    changed_T = torch.cat(changed)
    return rate(changed_T[target_T]), rate(changed_T[~target_T])


def rate(flags: torch.Tensor) -> float | None:
    return float(flags.float().mean()) if len(flags) else None


def mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def measure_parts(probe: PatchProbe, x_TD: torch.Tensor, codes_TS: torch.Tensor, labels_T: Any, chosen: dict[int, tuple[int, float]],
                  max_act_S: np.ndarray, W_dec_SD: torch.Tensor, *, scale: float = -2.0, draws: int = 5,
                  seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """One row per chosen part: its latent's change rates and the two baselines' (means over ``draws``)."""
    labels_T = torch.as_tensor(np.asarray(labels_T), dtype=torch.int64).reshape(-1)
    x_TD, codes_TS, W_dec_SD = x_TD.float().cpu(), codes_TS.reshape(len(x_TD), -1).float().cpu(), W_dec_SD.float().cpu()
    before_T = probe.predict(x_TD)
    alive_S = np.flatnonzero(np.asarray(max_act_S) > 0)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    rows = []
    for p, (s, f1) in sorted(chosen.items()):
        target_T = labels_T == p
        tc, oc = change_rates(probe, x_TD, before_T, codes_TS[:, s], scale * float(max_act_S[s]), W_dec_SD[s], target_T)
        pool = alive_S[alive_S != s]
        picks = rng.choice(pool, min(draws, len(pool)), replace=False) if len(pool) else []
        lat = [change_rates(probe, x_TD, before_T, codes_TS[:, r], scale * float(max_act_S[r]), W_dec_SD[r], target_T) for r in picks]
        dirs = []
        for _ in range(draws):
            u_D = torch.randn(x_TD.shape[1], generator=gen)
            u_D *= W_dec_SD[s].norm() / u_D.norm().clamp_min(1e-12)
            dirs.append(change_rates(probe, x_TD, before_T, codes_TS[:, s], scale * float(max_act_S[s]), u_D, target_T))
        rows.append({"part": probe.part_names[p], "part_id": p, "latent": s, "f1": f1, "patches": int(target_T.sum()),
                     "probe_recall": rate(before_T[target_T] == p), "target_change": tc, "other_change": oc,
                     "random_latent": {**_means(lat), "latents": [int(r) for r in picks]},
                     "random_direction": _means(dirs)})  # fmt: skip
    return rows


def _means(pairs: list[tuple[float | None, float | None]]) -> dict[str, float | None]:
    return {key: mean_or_none([pair[i] for pair in pairs]) for i, key in enumerate(RATES)}


def macro(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The four rates averaged over the parts that have evaluation patches."""
    kept = [r for r in rows if r["target_change"] is not None]
    out: dict[str, Any] = {"parts": len(kept), **{k: mean_or_none([r[k] for r in kept]) for k in RATES}}
    for base in ("random_latent", "random_direction"):
        out[base] = {k: mean_or_none([r[base][k] for r in kept]) for k in RATES}
    return out


def no_parts(split: str, where: str) -> VisaeError:
    return VisaeError(f"the images of split '{split}' of {where} have no part masks: the segmentation protocol needs a part "
                      "label per patch", "use a dataset with part masks, or give a folder of label PNGs (visae.steering.masks)")  # fmt: skip


def training_sets(steerer: Any, eval_set: Any, n_images: int, seed: int, train_set: Any = None) -> tuple[int, Iterator[Any]]:
    """(count, ``ImageSet`` chunks) of the probe's training images: ``train_set``, else ``n_images`` of the
    store's split drawn at random, never one of the evaluation images."""
    if train_set is not None:
        n = len(train_set)
        return n, (train_set.subset(np.arange(a, min(a + CHUNK, n))) for a in range(0, n, CHUNK))
    split = steerer.store_split
    pool = np.arange(len(steerer.split(split)))
    if eval_set.split == split:
        pool = np.setdiff1d(pool, eval_set.index_B)
    idx = np.sort(np.random.default_rng(seed).choice(pool, min(n_images, len(pool)), replace=False))
    if len(idx) == 0:
        raise VisaeError(f"split '{split}' has no images besides the evaluation images", "evaluate on fewer images")
    return len(idx), (steerer.images(split, idx[a : a + CHUNK]) for a in range(0, len(idx), CHUNK))


def training_patches(steerer: Any, chunks: Iterator[Any], n_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, PartCounts, int]:
    """(x_TD, parts_T) of at most ``PROBE_PATCHES`` training patches, the F1 counts of all of them, and the image count."""
    rng, n_prefix = np.random.default_rng(seed + 1), steerer.layout.n_prefix
    counts, xs, ys, seen = PartCounts(steerer.d_sae), [], [], 0
    for imgs in chunks:
        if imgs.parts_BG is None:
            raise no_parts(imgs.split, steerer.dataset_spec)
        x_BND = steerer.layer_tokens(imgs.pixels_BCHW)
        counts.add(steerer.patch_codes(x_BND), imgs.parts_BG)
        x_TD, y_T = _flat(x_BND[:, n_prefix:], imgs.parts_BG)
        keep_T = torch.from_numpy(rng.random(len(y_T)) < PROBE_PATCHES / max(n_images * imgs.parts_BG.shape[1], 1))
        xs.append(x_TD[keep_T])
        ys.append(y_T[keep_T])
        seen += len(imgs)
    return torch.cat(xs), torch.cat(ys), counts, seen


def segmentation_eval(steerer: Any, eval_set: Any, x_BND: torch.Tensor, codes_BGS: torch.Tensor, *, train_images: int = 1000,
                      scale: float = -2.0, draws: int = 5, seed: int = 0, min_patches: int = 20, train_set: Any = None,
                      part_names: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The protocol of the module docstring, JSON-ready. ``x_BND``: the layer's tokens of ``eval_set``;
    ``codes_BGS``: the SAE codes of their patches. The probe and the latents are chosen on training
    images (``train_set``, else ``train_images`` of the store's split); the rates are read on ``eval_set``."""
    if steerer.grid is None:
        raise VisaeError(f"layer '{steerer.layer}' has no patch grid: no per-patch parts", "steer a run of a gridded layer")
    if eval_set.parts_BG is None:
        raise no_parts(eval_set.split, steerer.dataset_spec)
    names = list(part_names if part_names is not None else (getattr(steerer.dataset, "part_names", None) or []))
    ex_BGD = x_BND[:, steerer.layout.n_prefix :]
    if tuple(ex_BGD.shape[:2]) != tuple(eval_set.parts_BG.shape) or tuple(codes_BGS.shape[:2]) != tuple(eval_set.parts_BG.shape):
        raise VisaeError(f"tokens {tuple(ex_BGD.shape[:2])}, codes {tuple(codes_BGS.shape[:2])} and parts "
                         f"{tuple(eval_set.parts_BG.shape)} do not match", "pass the tokens and codes of eval_set's images")  # fmt: skip
    n_train, chunks = training_sets(steerer, eval_set, train_images, seed, train_set)
    x_TD, y_T, counts, seen = training_patches(steerer, chunks, n_train, seed)
    probe = train_patch_probe(x_TD[None], y_T[None], names, ex_BGD, eval_set.parts_BG)
    info(f"[steer] patch probe: held-out accuracy {probe.heldout_accuracy:.3f} on {probe.heldout_patches} patches")
    heldout_T = np.asarray(eval_set.parts_BG).reshape(-1)
    rows = measure_parts(probe, ex_BGD.reshape(-1, ex_BGD.shape[-1]), codes_BGS, heldout_T, counts.best(min_patches),
                         steerer.max_act(), steerer.sae.W_dec.detach(), scale=scale, draws=draws, seed=seed)  # fmt: skip
    chance = float((heldout_T == int(counts.n_P.argmax())).mean()) if len(heldout_T) else None
    return {"probe": {"accuracy": probe.heldout_accuracy, "patches": probe.heldout_patches, "chance": chance,
                      "train_patches": probe.train_patches, "train_images": seen, "eval_images": len(eval_set),
                      "part_names": probe.part_names},
            "scale": scale, "draws": draws, "seed": seed, "parts": rows, "macro": macro(rows)}  # fmt: skip


def plot_segmentation(result: dict[str, Any], path: Path) -> None:
    """Grouped bars per part and the macro average: target (solid) and other (hatched) change of the
    latent, a random latent and a random direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visae.atomic import atomic_path

    groups = [(r["part"], r) for r in result["parts"]] + [("macro", result["macro"])]
    methods = [("latent", lambda r: r, "tab:blue"), ("random latent", lambda r: r["random_latent"], "tab:gray"),
               ("random direction", lambda r: r["random_direction"], "tab:orange")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(groups) + 2), 3.4))
    width = 0.8 / (2 * len(methods))
    for m, (label, get, color) in enumerate(methods):
        for k, (key, hatch) in enumerate((("target_change", None), ("other_change", "//"))):
            xs = np.arange(len(groups)) + (2 * m + k - len(methods) + 0.5) * width
            ys = [get(r)[key] or 0.0 for _, r in groups]
            ax.bar(xs, ys, width, color=color, hatch=hatch, alpha=1.0 if k == 0 else 0.55,
                   label=f"{label}: {key.replace('_', ' ')}")  # fmt: skip
    ax.set_xticks(np.arange(len(groups)), [g for g, _ in groups], rotation=30, ha="right")
    ax.set_ylabel("share of patches whose probe label changes")
    ax.set_ylim(0, 1)
    ax.set_title(f"suppressing each part's best-F1 latent at {result['scale']:g}× its max")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
