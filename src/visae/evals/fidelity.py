"""Spliced fidelity: the model with the SAE's reconstruction in place of its layer (docs/metrics.md).

On held-out images with labels t, the model is run five ways, changing only the patch tokens of the
SAE's layer (CLS and register tokens are kept):

    clean        the model as it is
    sae          x' = x̂, the saved SAE's reconstruction (``Splice(mode="recon")``)
    random_sae   x' = x̂ of a random-init SAE of the same shape (a baseline)
    zero         x' = 0
    mean         x' = x̄, the mean token of the training store

and read by the run's head (the classifier, or a linear probe; ``visae.steering.head``):

    accuracy            share of images with argmax ℓ = t
    cross-entropy       L = mean −log softmax(ℓ)_t
    KL to clean         mean KL(softmax ℓ_clean ‖ softmax ℓ)
    loss recovered      (L_ablated − L_sae) / (L_ablated − L_clean), for ablated = zero and mean
    accuracy retained   accuracy_sae / accuracy_clean
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visae.evals.data import Missing

IMAGES = 512
"""Held-out images run through the model (option fidelity_images)."""


class Replace:
    """A forward hook that sets the layer's patch tokens to a constant vector (zero- and mean-ablation)."""

    def __init__(self, steerer: Any, value_D: torch.Tensor):
        self.steerer, self.value_D, self.handle = steerer, value_D, None

    def __enter__(self) -> "Replace":
        module = self.steerer.backbone.model.get_submodule(self.steerer.layer)
        self.handle = module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()

    def _hook(self, module: Any, args: Any, output: Any) -> Any:
        from visae.steering.tokens import from_seq, to_seq

        out = output[0] if isinstance(output, (tuple, list)) else output
        layout = self.steerer.layout
        x_BND = to_seq(out, layout).clone()
        x_BND[:, layout.n_prefix :] = self.value_D.to(x_BND)
        new = from_seq(x_BND, out, layout)
        return (new, *output[1:]) if isinstance(output, tuple) else new


def _measures(logits_BL: torch.Tensor, clean_BL: torch.Tensor, label_B: np.ndarray) -> dict[str, float]:
    lab = torch.from_numpy(label_B)
    logp_BL = logits_BL.double().log_softmax(1)
    logq_BL = clean_BL.double().log_softmax(1)
    return {
        "accuracy": float((logits_BL.argmax(1) == lab).double().mean()),
        "cross_entropy": float(-logp_BL.gather(1, lab[:, None]).mean()),
        "kl_to_clean": float((logq_BL.exp() * (logq_BL - logp_BL)).sum(1).mean().clamp_min(0)),
    }


@torch.no_grad()
def evaluate(ctx: Any) -> dict[str, Any]:
    s = ctx.steerer()
    es = ctx.heldout
    keep = np.nonzero(es.label_B >= 0)[0]
    if len(np.unique(es.label_B[keep])) < 2:
        raise Missing(f"the held-out images carry {len(np.unique(es.label_B[keep]))} class label(s)", "evaluate on a labelled held-out store")
    n = int(ctx.options.get("fidelity_images", IMAGES))
    rows = np.sort(np.random.default_rng(ctx.seed).choice(keep, min(n, len(keep)), replace=False))
    imgs = s.images(es.split, es.index_B[rows])
    labels = imgs.label_B
    pixels = imgs.pixels_BCHW
    clean = s.logits(pixels)
    from visae.steering.splice import Splice

    mean_D = ctx.fit_sample().double().mean(0).float()
    out: dict[str, Any] = {"images": int(len(rows)), "head": s.head.to_json(), "clean": _measures(clean, clean, labels)}
    with Splice(s.backbone, s.sae, s.layer, mode="recon"):
        out["sae"] = _measures(s.logits(pixels), clean, labels)
    rand = ctx.random_sae()
    if not isinstance(rand, str):
        with Splice(s.backbone, rand.to(s.backbone.device), s.layer, mode="recon"):
            out["random_sae"] = _measures(s.logits(pixels), clean, labels)
    for name, value in (("zero", torch.zeros_like(mean_D)), ("mean", mean_D)):
        with Replace(s, value):
            out[name] = _measures(s.logits(pixels), clean, labels)
    for cond in ("sae", "random_sae"):
        if cond in out:
            for abl in ("zero", "mean"):
                gap = out[abl]["cross_entropy"] - out["clean"]["cross_entropy"]
                out[cond][f"loss_recovered_{abl}"] = (out[abl]["cross_entropy"] - out[cond]["cross_entropy"]) / gap if abs(gap) > 1e-12 else None
            acc = out["clean"]["accuracy"]
            out[cond]["accuracy_retained"] = out[cond]["accuracy"] / acc if acc > 0 else None
    return out


CONDITIONS = ("clean", "sae", "random_sae", "zero", "mean")


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys = ["accuracy", "cross_entropy", "kl_to_clean", "loss_recovered_zero", "loss_recovered_mean", "accuracy_retained"]
    conds = [c for c in CONDITIONS if c in result]
    return ["measure", *conds], [[k, *[_f(result[c].get(k)) for c in conds]] for k in keys]


def headline(result: dict[str, Any]) -> dict[str, str]:
    s, r = result["sae"], result.get("random_sae", {})
    return {"spliced fidelity": f"loss recovered {_f(s.get('loss_recovered_mean'))} vs mean-ablation (random-init SAE "
                                f"{_f(r.get('loss_recovered_mean'))}); accuracy {_f(s['accuracy'])} vs clean "
                                f"{_f(result['clean']['accuracy'])}, zero-ablated {_f(result['zero']['accuracy'])}, "
                                f"mean-ablated {_f(result['mean']['accuracy'])}; KL to clean {_f(s['kl_to_clean'])} "
                                f"({result['images']} held-out images)"}


def _f(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v:.3f}"
