"""What an edit is read on: the classifier's logits where it classifies the dataset's classes, else a linear probe;
and the run opened for steering (images, ids, max activations, ground-truth check)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visae.errors import VisaeError
from visae.steering.config import SteerEvalConfig
from visae.steering.head import fit_logistic, pooled
from visae.steering.session import Steerer


@pytest.fixture(scope="module")
def steerer(synth_run):
    return Steerer.open(synth_run["run"], device="cpu")


def test_the_demo_style_classifier_is_read_through_its_own_logits(steerer):
    assert steerer.head.kind == "classifier" and len(steerer.class_names) == 22
    imgs = steerer.images("val", np.arange(4))
    assert imgs.ids == ["val/000000", "val/000001", "val/000002", "val/000003"]
    assert imgs.parts_BG.shape == (4, 64) and imgs.pixels_BCHW.shape == (4, 3, 64, 64)
    want = steerer.backbone.forward(imgs.pixels_BCHW).logits
    assert torch.equal(steerer.logits(imgs.pixels_BCHW), want.float().cpu())


def test_a_probe_stands_in_on_request_with_its_held_out_accuracy(synth_run, capsys, monkeypatch):
    monkeypatch.delenv("VISAE_QUIET", raising=False)
    s = Steerer.open(synth_run["run"], device="cpu", head="probe", probe_images=200)
    assert s._head is None, "the probe trains on first use, once the images and latents asked for are checked"
    assert s.head.kind == "probe" and s.head.heldout_images == 40 and 0 <= s.head.heldout_accuracy <= 1
    assert s.logits(s.images("val", np.arange(3)).pixels_BCHW).shape == (3, 22)
    assert "held-out top-1" in s.head.describe() and 0 < s.head.majority < 1
    said = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert f"always the most common class: {s.head.majority:.3f}" in said
    assert ("no better than always guessing" in said) == (not s.head.heldout_accuracy > s.head.majority)


def test_a_classifier_of_other_classes_is_refused_as_a_head(steerer):
    from visae.steering.head import make_head

    steerer.backbone.class_names = ["cat", "dog"]
    try:
        with pytest.raises(VisaeError, match="--head probe"):
            make_head(steerer, "classifier")
    finally:
        steerer.backbone.class_names = list(steerer.dataset.class_names)


def test_logistic_probe_separates_separable_data_and_pooling_rules():
    g = torch.Generator().manual_seed(0)
    x_NF = torch.randn(300, 5, generator=g)
    y_N = (x_NF @ torch.randn(5, 3, generator=g)).argmax(1)  # linearly separable classes
    w, b = fit_logistic(x_NF, y_N, 3)
    assert ((x_NF @ w.T + b).argmax(1) == y_N).float().mean() > 0.95
    assert pooled(torch.ones(2, 4, 3, 3), 0).shape == (2, 4)
    seq = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(pooled(seq, 1), seq[:, 0]) and torch.equal(pooled(seq, 0), seq.mean(1))


def test_max_activation_comes_from_the_feature_db(steerer):
    from visae.analysis.db import FeatureDB

    with FeatureDB(steerer.db) as db:
        assert np.allclose(steerer.max_act(), db.column("max_act"))


def test_the_ground_truth_check_scores_part_latents_against_pooled_baselines(steerer):
    from visae.steering.choose import Pick
    from visae.steering.evaluate import make_pool
    from visae.steering.truth import truth_check

    cfg = SteerEvalConfig(run=steerer.info.path, n_images=48, per_latent=16, directions=2, latents="0")
    pool = make_pool(steerer, cfg)
    live = [int(i) for i in torch.nonzero(pool.peak_BS.amax(0) > 0)[:, 0][:3]]
    picks = [Pick(live[0], "chosen", part="wing"), Pick(live[1], "random"), Pick(live[2], "random")]
    res = truth_check(steerer, pool, picks, cfg)
    (row,) = res["latents"]
    assert row["part"] == "wing" and row["factors"] == ["planform", "wing_mount", "winglets"]
    assert row["images"] > 0 and 0 <= row["chance_share"] <= 1
    from visae.steering.suppress import own_images

    pooled_images = sum(len(own_images(pool, p.latent, 16)) for p in picks[1:])
    assert row["random_latent"]["images"] == pooled_images  # pooled over the two random latents' own images
    assert set(row["random_direction"]) >= {"lift", "directed_share", "chance_share"}
