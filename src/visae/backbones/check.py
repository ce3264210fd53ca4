"""Check a backbone's weights on labelled images: the loud note after a position match.

Weights matched to a model by position (``allow_position_match``) load whenever the shapes
line up, also into a model that computes differently from the weights' own code. A
classifier with known labels shows it: ``top1(backbone, images, labels)`` counts the images
it ranks right, and ``check_weights`` prints that count next to the one of the architecture
that takes the checkpoint by name (where one was found), or warns that the weights are
unverified where no labelled check is possible. ``visae extract`` runs it on the labelled
images it extracts and records the result in the store's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from visae.progress import warn

CHECK_IMAGES = 200
"""At most this many labelled images are classified by the check (spread over the data)."""


@dataclass(frozen=True)
class WeightsCheck:
    """The result of checking position-matched weights (``to_json`` goes into a store's metadata)."""

    n_by_position: int
    """Tensors matched by position."""
    correct: int | None = None
    """Images whose label the classifier ranked first (None: no labelled check was possible)."""
    total: int | None = None
    """Labelled images classified."""
    reference: str | None = None
    """The architecture that takes the checkpoint by name, run on the same images."""
    reference_correct: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"position_match": True, **asdict(self)}


def top1(backbone: Any, images: Sequence[np.ndarray], labels: Sequence[int], batch_size: int = 32) -> tuple[int, int]:
    """(correct, total): how many ``images`` (HWC uint8 RGB) the classifier ranks their ``labels`` (its class indices) first."""
    correct = 0
    for i in range(0, len(images), batch_size):
        pixels_BCHW = torch.stack([backbone.preprocess(im) for im in images[i : i + batch_size]])
        out = backbone.forward(pixels_BCHW)
        logits_BK = getattr(out, "logits", out)
        pred_B = logits_BK.argmax(-1).cpu()
        correct += int((pred_B == torch.as_tensor(list(labels[i : i + batch_size]))).sum())
    return correct, len(images)


def check_weights(backbone: Any, images: Sequence[np.ndarray], labels: Sequence[int]) -> WeightsCheck:
    """Check a position-matched backbone on labelled images (possibly none) and say the result loudly."""
    from visae.backbones.base import load_backbone

    m = backbone.checkpoint
    n = m.n_by_position if m is not None else 0
    head = f"{backbone.spec.removesuffix(':' + m.checkpoint) if m else backbone.spec}: loaded {n} tensors by position"
    if not images or not backbone.class_names:
        why = "the model has no known class labels" if not backbone.class_names else "no image carries one of its labels"
        fix = (f"load the checkpoint as {m.fits}:CHECKPOINT" if m is not None and m.fits
               else "load the checkpoint into the architecture it was saved from")  # fmt: skip
        if backbone.class_names:
            fix = f"extract a folder whose class directories are its labels (e.g. ImageNet ids n01440764...) to check them, or {fix}"
        warn(f"{head}, and they are UNVERIFIED: no labelled check is possible ({why}); {fix}")
        return WeightsCheck(n)
    correct, total = top1(backbone, images, labels)
    ref = ref_correct = None
    if m is not None and m.fits:
        ref = m.fits
        ref_correct, _ = top1(load_backbone(f"{ref}:{m.checkpoint}", device=backbone.device), images, labels)
        expect = f"{ref}, whose names match the checkpoint, gets {ref_correct}/{total} on them"
    else:
        expect = "a correct load should be near the published top-1 of these weights"
    warn(f"{head}; check: top-1 {correct}/{total} on the given labelled images ({expect})")
    return WeightsCheck(n, correct, total, ref, ref_correct)


def model_labels(backbone: Any, class_names: Sequence[str]) -> list[int]:
    """Each dataset class name -> the model's class index (-1: none), by id (``n01440764``) or by description.

    A name matches a model class's id, its whole description, or one of the description's
    comma-separated names (``'bull mastiff'``, ``'tench'``), when no other class shares it.
    """
    index: dict[str, int] = {}
    shared: set[str] = set()
    for i, desc in enumerate(backbone.class_names or []):
        for name in {desc, *desc.split(",")}:
            key = _norm(name)
            if key in index and index[key] != i:
                shared.add(key)
            index.setdefault(key, i)
    for i, cid in enumerate(backbone.class_ids or []):
        index[_norm(cid)] = i
        shared.discard(_norm(cid))
    return [index[k] if (k := _norm(c)) in index and k not in shared else -1 for c in class_names]


def labelled_images(split: Any, class_names: Sequence[str], indices: Sequence[int], backbone: Any,
                    n: int = CHECK_IMAGES) -> tuple[list[np.ndarray], list[int]]:  # fmt: skip
    """Up to ``n`` readable images of ``split`` at ``indices`` (spread over them) whose class the model knows, with its labels."""
    to_model = model_labels(backbone, class_names)
    known = [int(i) for i in indices if 0 <= split.label(int(i)) < len(to_model) and to_model[split.label(int(i))] >= 0]
    picked = [known[j] for j in np.linspace(0, len(known) - 1, min(n, len(known))).round().astype(int)] if known else []
    images, labels = [], []
    for i in dict.fromkeys(picked):
        try:
            sample = split[i]
        except Exception:  # noqa: BLE001  (an unreadable image is left out of the check; extraction reports it)
            continue
        images.append(sample.image_HWC)
        labels.append(to_model[sample.label])
    return images, labels


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").strip().lower().split())


def describe_check(record: dict[str, Any] | None) -> str:
    """One line for a store's ``weights_check`` record (``visae store info``)."""
    r = record or {}
    head = f"{r.get('n_by_position', '?')} tensors matched BY POSITION"
    if r.get("correct") is None:
        return f"{head}, unverified (no labelled check was possible)"
    ref = f"; {r['reference']} gets {r['reference_correct']}/{r['total']}" if r.get("reference") else ""
    return f"{head}; check: top-1 {r['correct']}/{r['total']} on labelled images of the data{ref}"
