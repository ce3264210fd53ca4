"""The classifier stage: train (or fine-tune) the image classifier that SAEs are put on.

``train_classifier(ClassifierConfig(data=..., out=...)) -> Path`` writes a Hugging Face
``save_pretrained`` dir (loadable as ``hf:DIR`` by later stages);
``evaluate_classifier(EvalConfig(model=...)) -> dict`` measures it.
"""

from typing import Any

from visae.classifier.config import ClassifierConfig, EvalConfig

_LAZY = {
    "accuracy_report": "visae.classifier.evaluate",
    "evaluate_classifier": "visae.classifier.evaluate",
    "load_classifier": "visae.classifier.model",
    "train_classifier": "visae.classifier.train",
}
"""Imported on first use, so that reading a config (the CLI's --help) does not load torch."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'visae.classifier' has no attribute {name!r}")

__all__ = [
    "ClassifierConfig",
    "EvalConfig",
    "accuracy_report",
    "evaluate_classifier",
    "load_classifier",
    "train_classifier",
]
