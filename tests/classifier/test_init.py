"""--init: fine-tune from a local save_pretrained dir or a visae classifier, with a new label set."""

from __future__ import annotations

import json

import pytest
import torch

from visae.classifier import ClassifierConfig, load_classifier, train_classifier
from visae.errors import VisaeError

TINY = dict(batch_size=32, precision="fp32", channels_last="off")


@pytest.fixture(scope="module")
def five_class_checkpoint(tmp_path_factory):
    """A random ConvNeXt with 5 other labels and its own normalisation, saved like a hub download."""
    from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessorPil

    path = tmp_path_factory.mktemp("hub") / "convnext-5"
    config = ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5,
                            id2label={i: f"thing{i}" for i in range(5)}, label2id={f"thing{i}": i for i in range(5)})  # fmt: skip
    torch.manual_seed(1)
    ConvNextForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessorPil(size={"shortest_edge": 24}, crop_pct=0.875, image_mean=[0.5] * 3, image_std=[0.3] * 3
                              ).save_pretrained(path)  # fmt: skip
    return path


def test_init_from_local_checkpoint_with_other_labels(bars_spec, five_class_checkpoint, tmp_path):
    from transformers import ConvNextForImageClassification

    out = train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "ft", init=f"hf:{five_class_checkpoint}",
                                            epochs=1, lr=1e-9, **TINY))  # fmt: skip
    model, preprocess, meta = load_classifier(out)
    assert model.config.id2label == {0: "wide", 1: "tall"} and model.classifier.out_features == 2
    assert (preprocess.size, preprocess.crop_pct, preprocess.mean) == (24, 0.875, (0.5, 0.5, 0.5))
    assert meta["init"] == f"hf:{five_class_checkpoint}"
    source = ConvNextForImageClassification.from_pretrained(five_class_checkpoint)
    torch.testing.assert_close(  # the body came from the checkpoint (lr ~ 0 keeps it)
        model.convnext.embeddings.patch_embeddings.weight, source.convnext.embeddings.patch_embeddings.weight, atol=1e-6, rtol=0
    )
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": 24} and processor["crop_pct"] == 0.875


def test_init_from_a_visae_classifier_keeps_its_preprocessing(bars_spec, five_class_checkpoint, tmp_path):
    first = train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "a", init=str(five_class_checkpoint),
                                              epochs=1, size=20, **TINY))  # fmt: skip
    second = train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "b", init=f"hf:{first}", epochs=1, **TINY))
    assert load_classifier(second)[1] == load_classifier(first)[1]
    assert load_classifier(second)[1].size == 20


def test_missing_checkpoints_are_clear_errors(bars_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(VisaeError, match="cannot load .* from 'nobody/no-such-convnext' in the Hugging Face cache"):
        train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "x", init="hf:nobody/no-such-convnext", **TINY))
    with pytest.raises(VisaeError, match="no such directory"):
        train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "y", init=str(tmp_path / "nope"), **TINY))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisaeError, match="in that directory"):
        train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "z", init=f"hf:{tmp_path / 'empty'}", **TINY))
