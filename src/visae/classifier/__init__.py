"""The classifier stage: train (or fine-tune) the image classifier that SAEs are put on.

``train_classifier(ClassifierConfig(data=..., out=...)) -> Path`` writes a Hugging Face
``save_pretrained`` dir (loadable as ``hf:DIR`` by later stages);
``evaluate_classifier(EvalConfig(model=...)) -> dict`` measures it.
"""

from visae.classifier.config import ClassifierConfig, EvalConfig
from visae.classifier.evaluate import accuracy_report, evaluate_classifier
from visae.classifier.model import load_classifier
from visae.classifier.train import train_classifier

__all__ = [
    "ClassifierConfig",
    "EvalConfig",
    "accuracy_report",
    "evaluate_classifier",
    "load_classifier",
    "train_classifier",
]
