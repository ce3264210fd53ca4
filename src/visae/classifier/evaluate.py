"""Accuracy of a classifier on a split: top-1/top-5 overall, per class, and per hierarchy level.

A prediction counts as right at the 'family' level when the predicted variant and the
true variant share their family (and so on up the hierarchy), which is the usual way
FGVC-Aircraft results are reported at its three granularities.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from visae.classifier.config import EvalConfig
from visae.classifier.model import load_classifier
from visae.classifier.runtime import set_threads
from visae.classifier.speed import Speed
from visae.data.base import Hierarchy, Split, open_dataset
from visae.data.transforms import Preprocess
from visae.errors import VisaeError
from visae.progress import make_progress


@torch.no_grad()
def predict(
    model: nn.Module,
    split: Split,
    preprocess: Preprocess,
    batch_size: int,
    speed: Speed | None = None,
    bar: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Logits of every readable image of ``split`` -> (logits_NL float32, labels_N, n_skipped).

    Shows a progress bar, as a task of ``bar`` when one is already live (rich allows one).
    """
    from visae.data.loader import ImageLoader

    speed = speed or Speed(bf16=False, channels_last=False)
    device = next(model.parameters()).device
    loader = ImageLoader(split, preprocess, batch_size, shuffle=False, pin_memory=device.type == "cuda")
    was_training = model.training
    model.eval()
    logits, labels = [], []
    with nullcontext(bar) if bar is not None else make_progress() as live:
        task = live.add_task(f"eval {split.name}", total=len(split), info="")
        for batch in loader:
            with speed.autocast():
                logits_BL = model(pixel_values=speed.layout(batch.pixels_BCHW.to(device, non_blocking=True))).logits
            logits.append(logits_BL.float().cpu().numpy())
            labels.append(np.asarray(batch.labels_B, dtype=np.int64))
            live.advance(task, len(batch.labels_B))
        if bar is not None:
            live.remove_task(task)
    model.train(was_training)
    n_classes = model.config.num_labels
    logits_NL = np.concatenate(logits) if logits else np.zeros((0, n_classes), np.float32)
    labels_N = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return logits_NL, labels_N, len(loader.skipped)


def accuracy_report(
    logits_NL: np.ndarray, labels_N: np.ndarray, class_names: list[str], hierarchy: Hierarchy | None = None
) -> dict[str, Any]:
    """Top-1/top-5, per-class top-1 and per-level top-1 of logits against labels (-1 labels are left out)."""
    keep_N = labels_N >= 0
    logits_NL, labels_N = logits_NL[keep_N], labels_N[keep_N]
    n = len(labels_N)
    pred_N = logits_NL.argmax(1) if n else np.zeros(0, np.int64)
    k = min(5, logits_NL.shape[1])
    top5_NK = np.argsort(-logits_NL, axis=1)[:, :k] if n else np.zeros((0, k), np.int64)
    right_N = pred_N == labels_N
    report: dict[str, Any] = {
        "n": n,
        "n_unlabelled": int((~keep_N).sum()),
        "top1": float(right_N.mean()) if n else float("nan"),
        "top5": float((top5_NK == labels_N[:, None]).any(1).mean()) if n else float("nan"),
        "per_class": {
            name: {"n": int((labels_N == i).sum()), "top1": float(right_N[labels_N == i].mean())}
            for i, name in enumerate(class_names)
            if (labels_N == i).any()
        },
    }
    if hierarchy is not None:
        report["levels"] = _level_accuracy(pred_N, labels_N, class_names, hierarchy)
    return report


def _level_accuracy(pred_N: np.ndarray, labels_N: np.ndarray, names: list[str], h: Hierarchy) -> dict[str, float]:
    levels: dict[str, float] = {}
    for level in h.levels:
        try:
            up_L = np.array([h.ancestor(name, level) for name in names])
        except KeyError:  # the hierarchy does not cover these classes at this level
            continue
        levels[level] = float((up_L[pred_N] == up_L[labels_N]).mean()) if len(labels_N) else float("nan")
    return levels


def relabel(labels_N: np.ndarray, data_names: list[str], model_names: list[str]) -> np.ndarray:
    """Map labels indexing ``data_names`` to indices into ``model_names`` (-1 where the model lacks the class)."""
    index = {n: i for i, n in enumerate(model_names)}
    lut = np.array([index.get(n, -1) for n in data_names] + [-1], dtype=np.int64)
    return lut[np.where(labels_N >= 0, labels_N, len(data_names))]


def evaluate_classifier(cfg: EvalConfig) -> dict[str, Any]:
    """Accuracy of the classifier in ``cfg.model`` on a split (its training data's val split by default)."""
    set_threads(cfg.threads)
    model, preprocess, meta = load_classifier(cfg.model)
    spec = cfg.data or meta["data"]
    ds = open_dataset(spec)
    split_name = cfg.split or ds.default_split("val")
    model_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if not set(ds.class_names) & set(model_names):
        raise VisaeError(
            f"{spec} shares no class name with the classifier in {cfg.model}",
            f"the classifier knows {', '.join(model_names[:5])}{', ...' if len(model_names) > 5 else ''}",
        )
    logits_NL, labels_N, skipped = predict(model, ds.split(split_name), preprocess, cfg.batch_size)
    labels_N = relabel(labels_N, ds.class_names, model_names)
    hierarchy = Hierarchy.from_json(meta["hierarchy"]) if meta.get("hierarchy") else ds.hierarchy
    report = accuracy_report(logits_NL, labels_N, model_names, hierarchy)
    return {"model": str(cfg.model), "data": spec, "split": split_name, "skipped": skipped, **report}
