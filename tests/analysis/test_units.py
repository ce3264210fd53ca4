"""The building blocks of analysis: streaming top-k, statistics, part geometry, labels."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.analysis.labels import (
    class_evidence, clip_evidence, decide_labels, nearest_phrases, part_evidence, projection_for_layer, vocabulary,
)
from visae.analysis.parts import cell_parts, distinct_images, dominant_part, part_pure
from visae.analysis.stats import HIST_BINS, HIST_EDGES, LatentStats, class_selectivity, selective
from visae.analysis.topk import TopK
from visae.analysis.units import Units, offer_patches
from visae.data.transforms import Preprocess


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), S=st.integers(1, 5), K=st.integers(1, 6), cuts=st.lists(st.integers(1, 39), max_size=5),
       seed=st.integers(0, 1000))
def test_streaming_topk_equals_topk_of_everything(n, S, K, cuts, seed):
    g = torch.Generator().manual_seed(seed)
    score_NS = torch.randn(n, S, generator=g)  # continuous: no ties
    top = TopK(S, K, {"row": ((), torch.int64), "vec": ((2,), torch.float32)})
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    for a, b in zip(bounds, bounds[1:]):
        top.update(score_NS[a:b], lambda bi, si, a=a: {"row": bi + a, "vec": torch.stack([bi + a, si], 1).float()})
    score_SK, data = top.sorted()
    k = min(K, n)
    want_score, want_row = score_NS.T.topk(k, dim=1)
    torch.testing.assert_close(score_SK[:, :k], want_score)
    assert torch.equal(data["row"][:, :k], want_row)
    assert torch.equal(data["vec"][:, :k, 1].long(), torch.arange(S)[:, None].expand(S, k))
    assert torch.isinf(score_SK[:, k:]).all()


def test_stats_histogram():
    st_ = LatentStats(S=2)
    codes_TS = torch.tensor([[0.0, 1e-3], [2.0, 0.0], [3.0, 1e5]])
    st_.update(codes_TS)
    out = st_.finish()
    np.testing.assert_allclose(out.freq_S, [2 / 3, 2 / 3])
    np.testing.assert_allclose(out.mean_act_S, [2.5, (1e-3 + 1e5) / 2])
    assert out.hist_SX.shape == (2, HIST_BINS) and out.hist_SX.sum() == 4
    assert out.hist_SX[1, -1] == 1  # 1e5 is above the last edge: clamped into the last bin
    b = np.searchsorted(HIST_EDGES, 2.0) - 1
    assert out.hist_SX[0, b] == 1


def test_units_class_mass_and_fired_images():
    u = Units(C=2, n_classes=3, grid=False)
    u.add(torch.tensor([[5.0, 0.0], [0.0, 1.0], [2.0, 0.5]]), torch.tensor([2, -1, 0]), torch.arange(3), None)
    out = u.finish()
    np.testing.assert_allclose(out.class_mass_CL, [[2.0, 0, 5.0], [0.5, 0, 0]])  # the unlabelled image is left out
    assert list(out.n_images_C) == [2, 2] and out.patches is None


def test_class_selectivity_corrects_for_class_frequency():
    # 90% of the tokens are class 0. Unit 0 fires alike on every token: by mass it would be 90% class 0.
    tokens_L = np.array([900, 50, 50])
    mass_CL = np.array([
        [900.0, 50.0, 50.0],  # uniform
        [0.0, 0.0, 50.0],  # class 2 only
        [90.0, 5.0, 50.0],  # weak everywhere, strong on class 2
        [0.0, 0.0, 0.0],  # never fired
    ])
    sel = class_selectivity(mass_CL, tokens_L)
    np.testing.assert_allclose(sel.share_C[:3], [1 / 3, 1.0, 1.0 / 1.2])
    np.testing.assert_allclose(sel.index_C, [0.0, 1.0, (1 - 0.1) / (1 + 0.1), 0.0], atol=1e-12)
    assert list(sel.top_C) == [sel.top_C[0], 2, 2, -1]
    np.testing.assert_allclose(sel.entropy_C[:2], [np.log(3), 0.0], atol=1e-12)
    n_images = np.array([100, 100, 100, 0])
    assert list(selective(sel, n_images, min_images=8)) == [False, True, True, False]
    assert not selective(sel, np.array([100, 3, 100, 0]), min_images=8)[1]  # too few images of evidence
    # a class without tokens has no mean and does not count against a unit
    sel2 = class_selectivity(np.array([[0.0, 10.0, 0.0]]), np.array([0, 10, 10]))
    assert sel2.top_C[0] == 1 and sel2.index_C[0] == 1.0 and sel2.share_C[0] == 1.0


def test_cell_parts_follow_resize_and_crop():
    # A 40 x 80 image, resized so the short side is 32 / 0.5 = 64 (-> 64 x 128), centre crop 32:
    # the crop sees rows 16..48 of 64 and columns 48..80 of 128 -> original rows 10..30, cols 30..50.
    parts = np.zeros((40, 80), np.uint8)
    parts[10:20, 30:50] = 1  # top half of the visible window
    parts[20:30, 30:40] = 2  # bottom-left quarter of it
    parts[:, :30] = parts[:, 50:] = 2  # outside the crop: must not count
    pre = Preprocess(size=32, crop_pct=0.5)
    cells = cell_parts(parts, pre, 2, 2)
    assert list(cells) == [1, 1, 2, 0]


def test_dominant_part_and_purity_need_distinct_images():
    part_SK = np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [2, 2, 1, 1, 0], [-1, -1, -1, -1, -1], [2, 2, 2, 2, -1]])
    part, share = dominant_part(part_SK)
    assert list(part) == [1, 0, 1, -1, 2]
    np.testing.assert_allclose(share, [1, 1, 0.4, 0, 0.8])
    many = np.full(5, 8)
    assert list(part_pure(part, share, many, min_images=8)) == [True, False, False, False, True]  # background is not a part
    image_SK = np.array([[0, 0, 0, 0, 0], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0], [0, 1, 1, 2, 9]])
    valid_SK = part_SK >= 0
    n_images = distinct_images(image_SK, valid_SK)
    assert list(n_images) == [1, 5, 5, 0, 3]
    assert not part_pure(part, share, n_images, min_images=2)[0]  # all five patches from one image
    assert part_pure(part, share, n_images, min_images=3)[4]


def test_labels_pick_the_better_supported_source_and_never_label_a_guess():
    n_images = np.array([9, 9, 0, 9, 3, 9])
    distinct = np.array([9, 9, 0, 9, 3, 2])  # latent 5: 9 images, but 7 of them near-duplicates
    cls = class_evidence(np.array([0, 1, -1, 0, 1, 0]), np.array([0.9, 0.4, 0, 0.95, 1.0, 0.9]), n_images, distinct,
                         8, ["jet", "prop"], 0.8)
    part = part_evidence(np.array([1, 2, 0, 1, -1, -1]), np.array([0.5, 0.95, 1.0, 0.41, 0, 0]),
                         np.array([9, 9, 9, 9, 0, 0]), 8, ["background", "wing", "tail"], 0.8)
    labels = decide_labels([cls, part], 6)
    assert labels.label_S == ["jet", "tail", "", "jet", "", ""]
    assert labels.source_S == ["class", "part", "", "class", "", ""]
    # below a threshold: no label, but the best guess (closest to its threshold), kept apart, with the reason
    assert labels.guess_S[2:] == ["background", "", "prop", "jet"]
    assert labels.why_S[2] == "the top patches fall mostly on the background"
    assert labels.why_S[4] == "fired on 3 images < 8" and labels.guess_score_S[4] == 1.0
    assert labels.why_S[5] == "2 distinct images (near-duplicates counted once) < 8"
    assert labels.guess_S[:2] == ["", ""]  # a labelled latent has no guess
    # a border/position latent is labelled as such; its content evidence is only a guess
    border = decide_labels([cls, part], 6, np.array([1, 0, 0, 0, 0, 0], bool), np.full(6, 7.5))
    assert (border.label_S[0], border.source_S[0], border.score_S[0]) == ("border/position", "border", 7.5)
    assert (border.guess_S[0], border.why_S[0]) == ("jet", "a border/position latent")
    # a CLIP phrase is a label only above its random-direction threshold
    clip = decide_labels([clip_evidence(["sky", "wing"], np.array([0.31, 0.2]), 0.25)], 2)
    assert clip.label_S == ["sky", ""] and clip.guess_S == ["", "wing"] and "0.20 < 0.25" in clip.why_S[1]
    assert vocabulary(["boeing_737"], ["background", "wing"], ["rivets"])[:3] == ["rivets", "boeing 737", "wing"]


def test_nearest_phrase_through_projection():
    proj = torch.nn.Linear(3, 2, bias=False)
    proj.weight.data = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    proj_DE = projection_for_layer("vision_model.post_layernorm", "pooled", 3, proj)
    assert projection_for_layer("vision_model.encoder.layers.11", "sequence", 3, proj) is None
    text = {"a photo of a cat": torch.tensor([1.0, 0.1]), "a photo of a dog": torch.tensor([0.0, 1.0])}
    W_dec_SD = torch.tensor([[2.0, 0, 5], [0, -1.0, 0], [0.1, 1.0, 0]])
    phrases, score = nearest_phrases(W_dec_SD, proj_DE, ["cat", "dog"], lambda ps: torch.stack([text[p] for p in ps]))
    assert phrases == ["cat", "cat", "dog"]
    assert score[0] > 0.99 and score[2] > 0.99


@settings(max_examples=30, deadline=None)
@given(batches=st.lists(st.integers(1, 6), min_size=1, max_size=5), S=st.integers(1, 4), G=st.integers(1, 9),
       K=st.integers(1, 7), per_image=st.integers(1, 3), seed=st.integers(0, 1000))
def test_capped_patch_topk_equals_brute_force(batches, S, G, K, per_image, seed):
    g = torch.Generator().manual_seed(seed)
    top = TopK(S, K, {"image": ((), torch.int64), "cell": ((), torch.int64)})
    cands = [[] for _ in range(S)]  # (score, image, cell) of each image's per_image best cells, per unit
    first = 0
    for B in batches:
        maps_BGS = torch.rand(B, G, S, generator=g)
        offer_patches(top, maps_BGS, torch.arange(first, first + B), per_image)
        for b in range(B):
            for s in range(S):
                best = maps_BGS[b, :, s].topk(min(per_image, G))
                cands[s] += [(float(v), first + b, int(c)) for v, c in zip(best.values, best.indices)]
        first += B
    score_SK, data = top.sorted()
    for s in range(S):
        want = sorted(cands[s], reverse=True)[:K]
        k = len(want)
        np.testing.assert_allclose(score_SK[s, :k].numpy(), [w[0] for w in want], rtol=1e-6)
        assert data["image"][s, :k].tolist() == [w[1] for w in want]
        assert data["cell"][s, :k].tolist() == [w[2] for w in want]
        assert np.bincount(data["image"][s, :k].numpy()).max() <= per_image  # never more than per_image per image
