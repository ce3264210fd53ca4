"""train_classifier end to end on tiny bar images: what it writes, that it learns, refusals, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from visae.artifact import read_marker, write_marker
from visae.classifier import ClassifierConfig, EvalConfig, evaluate_classifier, load_classifier, train_classifier
from visae.classifier import train as train_mod
from visae.device import resolve_device
from visae.errors import VisaeError

TINY = dict(size=16, patch_size=2, hidden_sizes=(8, 16), depths=(1, 1), batch_size=32, precision="fp32", channels_last="off")


@pytest.fixture(scope="module")
def trained(bars_spec, tmp_path_factory):
    """One epoch of a tiny ConvNeXt on 200 images."""
    out = tmp_path_factory.mktemp("clf") / "one_epoch"
    return train_classifier(ClassifierConfig(data=bars_spec, out=out, epochs=1, **TINY))


def test_writes_a_complete_hf_dir(trained, bars_spec):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "visae_classifier.json",
            "metrics.jsonl", "visae.json"} <= names  # fmt: skip
    assert "checkpoint.pt" not in names and not any(n.startswith(".") for n in names)
    marker = read_marker(trained)
    assert marker["kind"] == "classifier" and marker["complete"] is True
    config = json.loads((trained / "config.json").read_text())
    assert config["id2label"] == {"0": "wide", "1": "tall"} and config["label2id"] == {"wide": 0, "tall": 1}
    meta = json.loads((trained / "visae_classifier.json").read_text())
    assert meta["data"] == bars_spec and meta["splits"] == {"train": "train", "val": "val"}
    assert meta["class_names"] == ["wide", "tall"] and meta["hierarchy"]["levels"][0] == "variant"
    assert meta["epochs"] == 1 and 0 <= meta["val_top1"] <= 1 and meta["train_seconds"] >= 0  # recorded; its value is wall-clock, not asserted
    assert meta["preprocess"]["size"] == 16 and meta["compute"]["dtype"] == "float32"
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and {"loss", "train_top1", "val_top1", "lr"} <= set(rows[0])


def test_generic_hf_loaders_reproduce_the_logits(trained, bars_spec):
    """AutoImageProcessor + ConvNextForImageClassification give the logits visae's own loader gives."""
    from transformers import AutoImageProcessor, ConvNextForImageClassification

    from visae.data.base import open_dataset

    images_BHWC = np.stack([open_dataset(bars_spec).split("val")[i].image_HWC for i in range(4)])
    hf_model = ConvNextForImageClassification.from_pretrained(trained).eval()
    processor = AutoImageProcessor.from_pretrained(trained)
    pixels = processor(images=list(images_BHWC), return_tensors="pt")["pixel_values"]
    model, preprocess, meta = load_classifier(trained)
    with torch.no_grad():
        ours_BL = model(pixel_values=preprocess.batch(images_BHWC)).logits
        theirs_BL = hf_model(pixel_values=pixels).logits
    torch.testing.assert_close(theirs_BL, ours_BL, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        fmap_BCHW = hf_model.convnext(pixels, output_hidden_states=True).hidden_states[-1]
    assert fmap_BCHW.shape == (4, 16, 4, 4)  # 16 px, patch 2 -> 8 x 8, one downsampling -> 4 x 4


def test_learns_an_easy_two_class_problem(bars_spec, tmp_path):
    out = train_classifier(ClassifierConfig(data=bars_spec, out=tmp_path / "c", epochs=8, lr=1e-2, **{**TINY, "batch_size": 16}))
    report = evaluate_classifier(EvalConfig(model=out))
    assert report["top1"] >= 0.85, report  # chance is ~0.5
    assert report["levels"]["family"] == report["top1"] and report["levels"]["manufacturer"] == 1.0
    assert set(report["per_class"]) == {"wide", "tall"}


def test_refuses_another_artifact_without_force(bars_spec, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    write_marker(out, "sae-run")
    (out / "sae_weights.safetensors").write_bytes(b"precious")
    with pytest.raises(VisaeError, match="already holds a visae sae-run"):
        train_classifier(ClassifierConfig(data=bars_spec, out=out, epochs=1, **TINY))
    assert (out / "sae_weights.safetensors").read_bytes() == b"precious"
    train_classifier(ClassifierConfig(data=bars_spec, out=out, epochs=1, force=True, **TINY))
    assert read_marker(out)["kind"] == "classifier" and not (out / "sae_weights.safetensors").exists()


def test_interrupted_run_resumes_to_the_same_weights(bars_spec, tmp_path, monkeypatch):
    """Begun with device "cpu", resumed with "auto": the device is no part of the resume check."""
    cfg = dict(data=bars_spec, epochs=2, **TINY)
    straight = train_classifier(ClassifierConfig(out=tmp_path / "straight", device="cpu", **cfg))

    real_checkpoint = train_mod._checkpoint

    def crash_after_first(c, run, out):
        real_checkpoint(c, run, out)
        if run.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(ClassifierConfig(out=tmp_path / "resumed", device="cpu", **cfg))
    monkeypatch.undo()
    assert read_marker(tmp_path / "resumed")["complete"] is False
    with pytest.raises(VisaeError, match="unfinished"):
        load_classifier(tmp_path / "resumed")
    with pytest.raises(VisaeError, match=r"holds a classifier trained with other settings \(epochs: 2 -> 3\)"):
        train_classifier(ClassifierConfig(out=tmp_path / "resumed", **{**cfg, "epochs": 3}))
    # rerunning the same command continues it (as resume=True does)
    resumed = train_classifier(ClassifierConfig(out=tmp_path / "resumed", device="auto", **cfg))
    rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    meta = json.loads((resumed / "visae_classifier.json").read_text())
    assert meta["compute"]["device"] == str(resolve_device("auto")) and meta["config"]["device"] == "auto"
    a, b = load_classifier(straight)[0].state_dict(), load_classifier(resumed)[0].state_dict()
    exact = resolve_device("auto").type == "cpu"  # on a GPU the second epoch runs under bf16 autocast
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=0 if exact else 0.05, rtol=0 if exact else 0.05)
    with pytest.raises(VisaeError, match="nothing to resume"):
        train_classifier(ClassifierConfig(out=resumed, resume=True, **cfg))


def test_resume_against_another_dataset_at_the_same_path_is_refused(tmp_path, monkeypatch, synth_writer):
    write_synth = synth_writer

    data = tmp_path / "data"
    spec = write_synth(data, {"train": 64, "val": 32})
    cfg = dict(data=spec, epochs=2, **TINY)
    real_checkpoint = train_mod._checkpoint

    def crash_after_first(c, run, out):
        real_checkpoint(c, run, out)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(ClassifierConfig(out=tmp_path / "clf", **cfg))
    monkeypatch.undo()
    shutil.rmtree(data)
    write_synth(data, {"train": 64, "val": 32}, seed=1)  # same spec, sizes and classes: other images
    with pytest.raises(VisaeError, match=r"the dataset is not the one the run began with \(its contents differ\)"):
        train_classifier(ClassifierConfig(out=tmp_path / "clf", resume=True, **cfg))
