"""Input-space ablation: exact pixel masks, blur/grey touching only the masked pixels, seeded controls of the
same size, a planted model whose answer is known, and the real small run end to end."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visae.errors import VisaeError
from visae.steering.ablate import (ablate_cells, ablation_eval, ablation_figure, cell_mask, control_cells, gaussian_blur,
                                latent_cells, plot_ablation)  # fmt: skip
from visae.steering.session import ImageSet

# --- masks ---------------------------------------------------------------------------------------


def test_cell_mask_covers_exactly_the_cells_pixel_block():
    cells_G = torch.zeros(64, dtype=torch.bool)
    cells_G[2 * 8 + 3] = True
    mask = cell_mask(cells_G, (8, 8), 64)
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[16:24, 24:32] = True
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("grid, size", [((3, 3), 10), ((7, 5), 32), ((4, 4), 30)])
def test_cell_masks_of_an_uneven_grid_partition_the_image_into_near_equal_blocks(grid, size):
    H, W = grid
    total = torch.zeros(size, size, dtype=torch.int64)
    for y in range(H):
        for x in range(W):
            cells_G = torch.zeros(H * W, dtype=torch.bool)
            cells_G[y * W + x] = True
            mask = cell_mask(cells_G, grid, size)
            r0, r1 = math.ceil(y * size / H), math.ceil((y + 1) * size / H)
            c0, c1 = math.ceil(x * size / W), math.ceil((x + 1) * size / W)
            expected = torch.zeros(size, size, dtype=torch.bool)
            expected[r0:r1, c0:c1] = True
            assert torch.equal(mask, expected), (y, x)
            total += mask
    assert torch.equal(total, torch.ones_like(total))


# --- grey and blur -------------------------------------------------------------------------------


def _random_cells(B, G, seed=0):
    return torch.rand(B, G, generator=torch.Generator().manual_seed(seed)) < 0.3


def test_grey_sets_exactly_the_masked_pixels_to_zero():
    px = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 5
    cells_BG = _random_cells(3, 16)
    out = ablate_cells(px, cells_BG, (4, 4), "grey")
    for b in range(3):
        m = cell_mask(cells_BG[b], (4, 4), 32).expand(3, -1, -1)
        assert (out[b][m] == 0).all()
        assert torch.equal(out[b][~m], px[b][~m])
    assert (out == 0).sum() == 3 * sum(int(cell_mask(c, (4, 4), 32).sum()) for c in cells_BG)


def test_blur_changes_only_the_masked_pixels_and_takes_the_blurred_values_there():
    px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cells_BG = _random_cells(2, 16, seed=3)
    out = ablate_cells(px, cells_BG, (4, 4), "blur", sigma=2.0)
    blurred = gaussian_blur(px, 2.0)
    for b in range(2):
        m = cell_mask(cells_BG[b], (4, 4), 32).expand(3, -1, -1)
        assert torch.equal(out[b][~m], px[b][~m])
        assert torch.equal(out[b][m], blurred[b][m])
        assert not torch.allclose(out[b][m], px[b][m])


def test_blurring_a_constant_image_changes_nothing():
    px = torch.full((1, 3, 20, 20), 0.7)
    px[:, 1] = -1.3
    assert torch.allclose(gaussian_blur(px, 3.0), px, atol=1e-6)
    out = ablate_cells(px, torch.ones(1, 16, dtype=torch.bool), (4, 4), "blur")
    assert torch.allclose(out, px, atol=1e-6)


def test_blur_of_an_impulse_is_a_normalised_separable_gaussian():
    px = torch.zeros(1, 1, 41, 41)
    px[0, 0, 20, 20] = 1.0
    sigma = 1.5
    out = gaussian_blur(px, sigma)[0, 0]
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (out[20, 21] / out[20, 20]).item() == pytest.approx(math.exp(-0.5 / sigma**2), rel=1e-4)
    assert (out[22, 23] / out[20, 20]).item() == pytest.approx(math.exp(-0.5 * (4 + 9) / sigma**2), rel=1e-4)
    assert torch.allclose(out, out.T)


# --- controls ------------------------------------------------------------------------------------


def test_control_draws_have_the_latents_cell_count_are_seeded_and_differ_across_draws():
    n_B = np.array([1, 5, 8, 64, 0])
    c = control_cells(n_B, 64, draws=6, seed=7)
    assert c.shape == (6, 5, 64) and c.dtype == torch.bool
    assert (c.sum(-1) == torch.from_numpy(n_B)[None]).all()
    assert torch.equal(c, control_cells(n_B, 64, draws=6, seed=7))
    assert not torch.equal(c, control_cells(n_B, 64, draws=6, seed=8))
    assert len({tuple(np.flatnonzero(c[d, 2])) for d in range(6)}) == 6


def test_latent_cells_are_those_at_or_above_the_share_of_the_images_max():
    act_BG = torch.tensor([[0.0, 1.0, 0.4, 0.6], [0.0, 0.0, 0.0, 0.0], [2.0, 0.1, 1.0, 0.9]])
    cells, fires = latent_cells(act_BG, 0.5)
    assert fires.tolist() == [True, False, True]
    assert cells.tolist() == [[False, True, False, True], [False] * 4, [True, False, True, False]]
    assert latent_cells(act_BG, 1.0)[0].sum(1).tolist() == [1, 0, 1]


# --- a planted model: the class-0 logit reads only cells 5 and 6 of a 4x4 grid --------------------


class RegionSteerer:
    """Logit 0 = 10 × mean pixel over cells (1,1) and (1,2); logit 1 = 1. Latent 0 = relu(cell mean)."""

    grid = (4, 4)
    class_names = ["plane", "other"]
    dataset = SimpleNamespace(hierarchy=None)
    preprocess = SimpleNamespace(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    def logits(self, pixels_BCHW):
        region = pixels_BCHW[:, :, 8:16, 8:24].mean((1, 2, 3))
        return torch.stack([10 * region, torch.ones_like(region)], 1)

    def layer_tokens(self, pixels_BCHW):
        return F.avg_pool2d(pixels_BCHW.mean(1, keepdim=True), 8).flatten(1)[:, :, None]

    def patch_codes(self, x_BND):
        return torch.cat([x_BND.relu(), (-x_BND).relu()], -1)


def planted_images(n=12, silent=2):
    g = torch.Generator().manual_seed(0)
    px = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    px[:, :, 8:16, 8:24] += 2.0
    px[n - silent :] = -1.0  # latent 0 is silent on these
    return ImageSet("val", np.arange(n), [f"img{i}" for i in range(n)], np.zeros(n, dtype=np.int64), px, None)


@pytest.mark.parametrize("mode", ["grey", "blur"])
def test_ablating_the_latents_region_moves_the_margin_more_than_random_cells(mode):
    s, imgs = RegionSteerer(), planted_images()
    codes = s.patch_codes(s.layer_tokens(imgs.pixels_BCHW))
    r = ablation_eval(s, 0, imgs, codes, mode=mode, draws=5, seed=0)
    assert (r["images"], r["skipped"]) == (10, 2)
    assert r["cells_mean"] == 2.0 and all(p["cells"] == 2 for p in r["per_image"])
    md = r["margin_drop"]
    assert md["latent"] < md["control"] - 3 and md["difference"] == pytest.approx(md["latent"] - md["control"])
    if mode == "grey":
        assert r["latent"]["margin_after"] == pytest.approx(-1.0)  # the region is all of logit 0: 0 - 1 after grey
    own = r["own_activation"]
    assert own["latent"] > own["control"] + 0.3 and own["latent"] > (0.9 if mode == "grey" else 0.4)
    if mode == "grey":
        assert r["latent"]["flip_rate"] == 1.0 > r["control"]["flip_rate"]
    assert r == ablation_eval(s, 0, imgs, codes, mode=mode, draws=5, seed=0)
    assert r["control"] != ablation_eval(s, 0, imgs, codes, mode=mode, draws=5, seed=1)["control"]


def test_a_latent_silent_on_every_image_is_all_skipped():
    s, imgs = RegionSteerer(), planted_images(4, silent=4)
    r = ablation_eval(s, 0, imgs, s.patch_codes(s.layer_tokens(imgs.pixels_BCHW)))
    assert (r["images"], r["skipped"], r["per_image"], r["latent"], r["latent_index"]) == (0, 4, [], None, 0)
    json.dumps(r)


@pytest.mark.parametrize("kw", [dict(threshold=0.0), dict(threshold=1.5), dict(threshold=-0.2), dict(draws=0),
                                dict(mode="smudge"), dict(sigma=0.0), dict(latent=2), dict(latent=-1)])  # fmt: skip
def test_bad_input_is_refused_in_one_line(kw):
    s, imgs = RegionSteerer(), planted_images(4)
    codes = s.patch_codes(s.layer_tokens(imgs.pixels_BCHW))
    with pytest.raises(VisaeError) as e:
        ablation_eval(s, kw.pop("latent", 0), imgs, codes, **kw)
    assert "\n" not in str(e.value)


def test_a_layer_without_a_grid_is_refused():
    s, imgs = RegionSteerer(), planted_images(4)
    codes = s.patch_codes(s.layer_tokens(imgs.pixels_BCHW))
    s.grid = None
    with pytest.raises(VisaeError, match="grid"):
        ablation_eval(s, 0, imgs, codes)


def test_unknown_mode_is_refused_by_ablate_cells():
    with pytest.raises(VisaeError):
        ablate_cells(torch.zeros(1, 3, 8, 8), torch.ones(1, 4, dtype=torch.bool), (2, 2), "smudge")


# --- the real small run ------------------------------------------------------------------------------


def test_ablation_eval_on_the_real_run(synth_run, tmp_path):
    from visae.steering.session import Steerer

    s = Steerer.open(synth_run["run"], device="cpu")
    split = s.eval_split()
    imgs = s.images(split, s.sample_indices(split, 32))
    codes = s.patch_codes(s.layer_tokens(imgs.pixels_BCHW))
    fired = (codes.amax(1) > 0).sum(0)
    latent = int(fired.argmax())
    r = ablation_eval(s, latent, imgs, codes, mode="grey", draws=3, seed=0)
    assert {"latent", "mode", "threshold", "draws", "images", "skipped", "cells_mean", "latent_index", "control", "margin_drop",
            "own_activation", "per_image"} <= set(r)  # fmt: skip
    assert r["images"] + r["skipped"] == 32 and r["images"] == int(fired[latent]) > 0
    assert r["latent_index"] == latent and set(r["control"]) == set(r["latent"]) and len(r["per_image"]) == r["images"]
    assert {"id", "label", "cells", "margin_before", "margin_after", "control_margin_after", "flip"} <= set(r["per_image"][0])
    nums = [r["cells_mean"], *r["margin_drop"]["control_draws"], r["margin_drop"]["latent"], r["margin_drop"]["control"],
            r["own_activation"]["latent"], r["own_activation"]["control"], r["latent"]["kl"], r["control"]["kl"]]  # fmt: skip
    assert all(isinstance(v, float) and math.isfinite(v) for v in nums)
    assert r["own_activation"]["latent"] > r["own_activation"]["control"]  # its own cells matter more to it
    json.dumps(r, allow_nan=False)

    plot_ablation([r, r | {"latent_index": latent + 1}], tmp_path / "ablation.png")
    cells_BG, _ = latent_cells(codes[:8, :, latent], 0.5)
    ablation_figure(imgs.pixels_BCHW[:8], ablate_cells(imgs.pixels_BCHW[:8], cells_BG, s.grid, "blur"), s.preprocess,
                    tmp_path / "strip.png")  # fmt: skip
    for name in ("ablation.png", "strip.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
