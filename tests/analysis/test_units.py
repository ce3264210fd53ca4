"""The building blocks of analysis: streaming top-k, statistics, part geometry, labels."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.analysis.labels import class_part_labels, nearest_phrases, projection_for_layer, vocabulary
from visae.analysis.parts import cell_parts, count_pure, dominant_part
from visae.analysis.stats import HIST_BINS, HIST_EDGES, LatentStats, class_selectivity
from visae.analysis.topk import TopK
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


def test_stats_histogram_and_class_mass():
    st_ = LatentStats(S=2, L=3)
    codes_TS = torch.tensor([[0.0, 1e-3], [2.0, 0.0], [3.0, 1e5]])
    st_.update(codes_TS, torch.tensor([[5.0, 0.5], [0.0, 1.0]]), torch.tensor([2, -1]))
    out = st_.finish()
    np.testing.assert_allclose(out.freq_S, [2 / 3, 2 / 3])
    np.testing.assert_allclose(out.mean_act_S, [2.5, (1e-3 + 1e5) / 2])
    assert out.hist_SX.shape == (2, HIST_BINS) and out.hist_SX.sum() == 4
    assert out.hist_SX[1, -1] == 1  # 1e5 is above the last edge: clamped into the last bin
    b = np.searchsorted(HIST_EDGES, 2.0) - 1
    assert out.hist_SX[0, b] == 1
    np.testing.assert_allclose(out.class_mass_SL, [[0, 0, 5.0], [0, 0, 0.5]])  # the unlabelled image is left out
    top, share, ent = class_selectivity(np.array([[1.0, 1.0, 2.0], [0, 0, 0]]))
    assert list(top) == [2, -1] and share[0] == 0.5
    np.testing.assert_allclose(ent[0], -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)))


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


def test_dominant_part_and_purity_count():
    part_SK = np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [2, 2, 1, 1, 0], [-1, -1, -1, -1, -1], [2, 2, 2, 2, -1]])
    part, share = dominant_part(part_SK)
    assert list(part) == [1, 0, 1, -1, 2]
    np.testing.assert_allclose(share, [1, 1, 0.4, 0, 0.8])
    assert count_pure(part, share) == 2  # all-background latent is not part-pure


def test_labels_pick_the_better_supported_source():
    labels = class_part_labels(np.array([0, 1, -1]), np.array([0.9, 0.4, 0]), ["jet", "prop"],
                               np.array([1, 2, 0]), np.array([0.5, 0.95, 1.0]), ["background", "wing", "tail"])
    assert labels.label_S == ["jet", "tail", ""]
    assert labels.source_S == ["class", "part", ""]
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
       K=st.integers(1, 7), seed=st.integers(0, 1000))
def test_patch_topk_from_maps_equals_brute_force(batches, S, G, K, seed):
    from visae.analysis.scan import _add_map_patches

    g = torch.Generator().manual_seed(seed)
    top = TopK(S, K, {"image": ((), torch.int64), "cell": ((), torch.int64)})
    all_vals, first = [], 0
    for B in batches:
        maps_BSG = torch.rand(B, S, G, generator=g)
        _add_map_patches(top, maps_BSG, maps_BSG.amax(2), torch.arange(first, first + B))
        all_vals.append(maps_BSG.permute(1, 0, 2).reshape(S, -1))
        first += B
    vals_SX = torch.cat(all_vals, dim=1)  # per latent: image-major, then cell
    score_SK, data = top.sorted()
    k = min(K, vals_SX.shape[1])
    want, pos = vals_SX.topk(k, dim=1)
    torch.testing.assert_close(score_SK[:, :k], want)
    assert torch.equal(data["image"][:, :k] * G + data["cell"][:, :k], pos)
