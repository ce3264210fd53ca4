"""The pieces: augmentation, learning-rate schedule, accuracy report, speed choice."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.classifier import ClassifierConfig, accuracy_report
from visae.classifier.augment import flip_shift
from visae.classifier.evaluate import relabel
from visae.classifier.speed import choose_speed
from visae.classifier.train import _warmup_cosine
from visae.data.base import Hierarchy


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.integers(0, 3), flip=st.booleans(), h=st.integers(1, 6), w=st.integers(1, 6))
def test_flip_shift_is_a_flipped_crop_of_the_padded_image(seed, shift, flip, h, w):
    x_BCHW = torch.randn(5, 2, h, w, generator=torch.Generator().manual_seed(seed))
    y_BCHW = flip_shift(x_BCHW, shift, flip, torch.Generator().manual_seed(seed))
    assert y_BCHW.shape == x_BCHW.shape
    padded = F.pad(x_BCHW, (shift,) * 4, mode="replicate")
    for b in range(5):
        candidates = [padded[b, :, dy : dy + h, dx : dx + w] for dy in range(2 * shift + 1) for dx in range(2 * shift + 1)]
        candidates += [c.flip(-1) for c in candidates] if flip else []
        assert any(torch.equal(y_BCHW[b], c) for c in candidates)
    if shift == 0 and not flip:
        assert torch.equal(y_BCHW, x_BCHW)


def test_flip_shift_varies_per_image_and_is_seeded():
    x_BCHW = torch.arange(64 * 3 * 8 * 8, dtype=torch.float32).view(64, 3, 8, 8) % 17
    a = flip_shift(x_BCHW, 2, True, torch.Generator().manual_seed(3))
    b = flip_shift(x_BCHW, 2, True, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    changed = (a != x_BCHW).flatten(1).any(1)
    assert 0.7 < changed.float().mean() < 1.0 + 1e-9  # 1 - P(no flip, no shift) = 1 - 1/50


def test_warmup_then_cosine_to_the_floor():
    cfg = ClassifierConfig(data="x", out="y", epochs=10, warmup_epochs=2, min_lr_ratio=0.1)
    f = _warmup_cosine(cfg, steps_per_epoch=5)
    lrs = [f(t) for t in range(50)]
    assert lrs[:10] == sorted(lrs[:10]) and lrs[9] < 1 and f(10) == 1.0
    assert lrs[10:] == sorted(lrs[10:], reverse=True)
    assert math.isclose(f(50), 0.1) and lrs[-1] > 0.1


def test_accuracy_report_counts_levels_and_leaves_out_unknown_labels():
    names = ["a1", "a2", "b1"]
    h = Hierarchy(["variant", "family"], {"variant": {"a1": "A", "a2": "A", "b1": "B"}})
    logits_NL = np.eye(3, dtype=np.float32)[[0, 1, 0, 2, 2]]  # predictions a1, a2, a1, b1, b1
    labels_N = np.array([0, 0, 2, 2, -1])  # truths      a1, a1, b1, b1, unknown
    r = accuracy_report(logits_NL, labels_N, names, h)
    assert (r["n"], r["n_unlabelled"]) == (4, 1)
    assert r["top1"] == 0.5 and r["levels"] == {"variant": 0.5, "family": 0.75}
    assert r["per_class"] == {"a1": {"n": 2, "top1": 0.5}, "b1": {"n": 2, "top1": 0.5}}
    assert r["top5"] == 1.0


def test_relabel_maps_by_name():
    assert relabel(np.array([0, 1, 2, -1]), ["x", "y", "z"], ["z", "x"]).tolist() == [1, -1, 0, -1]


def test_speed_choice_times_only_when_asked():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    model = ConvNextForImageClassification(ConvNextConfig(patch_size=2, num_stages=1, hidden_sizes=[8], depths=[1], num_labels=2))
    x_BCHW, labels_B = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    fixed = choose_speed(model, x_BCHW, labels_B, "bf16", "off")
    assert (fixed.bf16, fixed.channels_last, fixed.step_ms) == (True, False, {})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    auto = choose_speed(model, x_BCHW, labels_B, "auto", "auto", steps=1)
    assert set(auto.step_ms) == {"fp32", "fp32+cl", "bf16", "bf16+cl"}
    assert auto.step_ms[auto.name] == min(auto.step_ms.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # timed on a copy
