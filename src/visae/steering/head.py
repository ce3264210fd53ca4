"""What an edit is read on: the classifier's logits, or a linear probe standing in for one.

A backbone that is a classifier of the dataset's own classes (same class names, in order) is
read through its logits. Any other backbone (a DINOv2, a CLIP tower, an ImageNet classifier on
aircraft) gets a linear probe on its pooled output (``pooler_output``, else the CLS token, else
the mean token), trained on labelled images of the store's split and checked on others: the
SAE-V classification protocol. Its held-out accuracy is reported with every effect it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from visae.errors import VisaeError
from visae.progress import info

HeadKind = Literal["auto", "classifier", "probe"]


@dataclass
class Head:
    kind: str
    """classifier (the model's own logits) or probe (a linear probe on its pooled output)."""
    class_names: list[str]
    weight_LF: torch.Tensor | None = None
    bias_L: torch.Tensor | None = None
    mean_F: torch.Tensor | None = None
    std_F: torch.Tensor | None = None
    n_cls: int = 0
    heldout_accuracy: float | None = None
    """The probe's top-1 on labelled images it was not trained on (None for a classifier)."""
    heldout_images: int = 0
    majority: float | None = None
    """The share of the held-out images in their most common class: the top-1 of always guessing it."""

    def logits(self, output: Any) -> torch.Tensor:
        if self.kind == "classifier":
            return model_logits(output)
        f_BF = (pooled(output, self.n_cls).float() - self.mean_F) / self.std_F  # type: ignore[operator]
        return f_BF @ self.weight_LF.T + self.bias_L  # type: ignore[union-attr]

    def describe(self) -> str:
        if self.kind == "classifier":
            return f"the classifier's own logits ({len(self.class_names)} classes)"
        return (f"a linear probe on the pooled output ({len(self.class_names)} classes, held-out top-1 "
                f"{self.heldout_accuracy:.3f} on {self.heldout_images} images"
                + (f", most common class {self.majority:.3f})" if self.majority is not None else ")"))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": len(self.class_names), "heldout_accuracy": self.heldout_accuracy,
                "heldout_images": self.heldout_images, "heldout_majority": self.majority}  # fmt: skip


def model_logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise VisaeError("the model's output is not a (batch, classes) tensor of logits", "use head='probe'")
    return logits


def pooled(output: Any, n_cls: int) -> torch.Tensor:
    """``f_BF``: one vector per image from a model output: its pooled output, else the CLS token or the mean over
    the tokens / cells of its last hidden state, else a classifier's logits."""
    for name in ("pooler_output", "image_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value.flatten(1)
    value = getattr(output, "last_hidden_state", None)
    if value is None:  # a classifier's output without pooled features: probe its logits
        value = getattr(output, "logits", None)
    if value is None:
        value = output
    if isinstance(value, (tuple, list)):
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise VisaeError(f"cannot pool the model's output ({type(output).__name__})", "steer a backbone that returns tensors")
    if value.ndim == 2:
        return value
    if value.ndim == 3:
        return value[:, 0] if n_cls else value.mean(1)
    if value.ndim == 4:
        return value.mean((2, 3))
    raise VisaeError(f"cannot pool a model output of shape {tuple(value.shape)}", "steer another backbone")


def make_head(steerer: Any, kind: HeadKind = "auto", probe_images: int = 2000) -> Head:
    """The classifier head where the model classifies the dataset's classes, else (or on request) a probe."""
    if kind not in ("auto", "classifier", "probe"):
        raise VisaeError(f"unknown head '{kind}'", "use auto, classifier or probe")
    names = list(steerer.dataset.class_names)
    model_names = list(steerer.backbone.class_names or [])
    is_classifier = bool(model_names) and model_names == names
    if kind == "classifier" and not is_classifier:
        why = "has no class names" if not model_names else f"classifies {len(model_names)} classes that are not the dataset's {len(names)}"
        raise VisaeError(f"the model {why}", "use --head probe (a linear probe on its pooled output)")
    if kind != "probe" and is_classifier:
        return Head("classifier", names)
    if len(names) < 2:
        raise VisaeError(f"{steerer.dataset_spec} has {len(names)} class(es): no probe can be trained", "steer on a labelled dataset")
    return train_probe(steerer, names, probe_images)


def train_probe(steerer: Any, names: list[str], n_images: int, seed: int = 0) -> Head:
    """A multinomial logistic probe on the pooled output of ``n_images`` labelled images of the store's
    split (80% train, 20% held out), standardised features, L2 0.01, full-batch L-BFGS."""
    split = steerer.store_split
    idx = steerer.sample_indices(split, n_images, seed)
    imgs = steerer.images(split, idx)
    keep = imgs.label_B >= 0
    if keep.sum() < 10:
        raise VisaeError(f"only {int(keep.sum())} labelled images in split '{split}': too few to train a probe",
                         "steer on a labelled dataset")  # fmt: skip
    n_cls = steerer.layout.n_cls if steerer.layout.kind == "sequence" else 0
    feats = []
    with torch.no_grad():
        for a in range(0, len(imgs), 256):
            feats.append(pooled(steerer.backbone.forward(imgs.pixels_BCHW[a : a + 256]), n_cls).float().cpu())
    f_NF, y_N = torch.cat(feats)[torch.from_numpy(keep)], torch.from_numpy(imgs.label_B[keep])
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y_N)))
    n_train = max(1, int(0.8 * len(y_N)))
    tr, te = perm[:n_train], perm[n_train:]
    mean_F, std_F = f_NF[tr].mean(0), f_NF[tr].std(0).clamp_min(1e-6)
    x_NF = (f_NF - mean_F) / std_F
    w_LF, b_L = fit_logistic(x_NF[tr], y_N[tr], len(names))
    acc = float(((x_NF[te] @ w_LF.T + b_L).argmax(1) == y_N[te]).float().mean()) if len(te) else float("nan")
    majority = float(y_N[te].bincount().max() / len(te)) if len(te) else float("nan")
    info(f"[steer] linear probe on the pooled output: held-out top-1 {acc:.3f} on {len(te)} images "
         f"(always the most common class: {majority:.3f})")  # fmt: skip
    if not acc > majority:
        info(f"warning: the probe is no better than always guessing the most common class ({acc:.3f} vs {majority:.3f}): "
             "flips, margins and KL read through it mean little; steer a model that classifies this dataset, or give "
             "the probe more labelled images (steer-eval: --probe-images)")  # fmt: skip
    return Head("probe", names, w_LF, b_L, mean_F, std_F, n_cls, acc, len(te), majority)


def fit_logistic(x_NF: torch.Tensor, y_N: torch.Tensor, n_classes: int, l2: float = 0.01,
                 steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(W_LF, b_L) of a multinomial logistic regression, mean cross-entropy + l2/2·||W||², by L-BFGS."""
    w_LF = torch.zeros(n_classes, x_NF.shape[1], requires_grad=True)
    b_L = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w_LF, b_L], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_NF @ w_LF.T + b_L, y_N) + 0.5 * l2 * (w_LF**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w_LF.detach(), b_L.detach()
