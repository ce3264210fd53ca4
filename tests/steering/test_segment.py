"""The SAE-V segmentation protocol: a planted part latent is found and its suppression changes the
patch probe on that part only; the edit is the splice's; the real run gives a full table; masks from PNGs."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from steer_fixtures import random_sae

from visae.backbones.tokens import TokenLayout
from visae.data.transforms import Preprocess
from visae.errors import VisaeError
from visae.sae import SAESpec, create_sae
from visae.steering.edit import Edit, LatentOp
from visae.steering.masks import folder_masks
from visae.steering.segment import (best_latents, change_rates, measure_parts, plot_segmentation, segmentation_eval,
                                 suppressed, train_patch_probe, training_sets)  # fmt: skip
from visae.steering.splice import splice_tokens

D, S, G = 64, 16, 16
NAMES = ["background", "wing", "tail"]


def planted_sae():
    """ReLU SAE whose latent i reads and writes the basis direction e_i (no biases)."""
    sae = create_sae(SAESpec(arch="relu", d_in=D, d_sae=S)).eval()
    with torch.no_grad():
        basis_SD = torch.eye(S, D)
        sae.W_dec.copy_(basis_SD)
        sae.W_enc.copy_(basis_SD.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def planted_patches(n_images: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """x_BGD with part c ∈ {0, 1, 2} marked by x[c'] ≈ 1 on dimension c' = (1, 2, 0)[c] (≈ −0.5 elsewhere):
    latent 0 (dimension 0) fires exactly on part 1, latent 1 on part 2; dims 3.. are noise."""
    g = torch.Generator().manual_seed(seed)
    parts_BG = torch.multinomial(torch.tensor([0.5, 0.25, 0.25]), n_images * G, replacement=True, generator=g).reshape(n_images, G)
    x_BGD = 0.3 * torch.randn(n_images, G, D, generator=g)
    x_BGD[..., :3] = -0.5 + 0.1 * torch.randn(n_images, G, 3, generator=g)
    dim_BG = torch.tensor([2, 0, 1])[parts_BG]
    x_BGD.scatter_(2, dim_BG[..., None], 1.0 + 0.1 * torch.randn(n_images, G, 1, generator=g))
    return x_BGD, parts_BG.numpy()


def codes_of(sae, x_BGD: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return sae.encode(x_BGD.reshape(-1, D)).dense().reshape(*x_BGD.shape[:2], -1)


@pytest.fixture(scope="module")
def planted():
    sae = planted_sae()
    x_BGD, parts_BG = planted_patches(60, seed=0)
    hx_BGD, hparts_BG = planted_patches(40, seed=1)
    codes_BGS = codes_of(sae, x_BGD)
    probe = train_patch_probe(x_BGD, parts_BG, NAMES, hx_BGD, hparts_BG)
    return dict(sae=sae, x=x_BGD, parts=parts_BG, hx=hx_BGD, hparts=hparts_BG, codes=codes_BGS, hcodes=codes_of(sae, hx_BGD),
                probe=probe, max_act=codes_BGS.amax((0, 1)).numpy())  # fmt: skip


def test_the_probe_learns_the_planted_parts_and_reports_held_out_accuracy(planted):
    probe = planted["probe"]
    assert probe.heldout_accuracy > 0.95
    assert probe.heldout_patches == 40 * G and probe.train_patches == 60 * G
    assert probe.part_names == NAMES
    shuffled = np.random.default_rng(0).permutation(planted["hparts"].reshape(-1)).reshape(planted["hparts"].shape)
    assert train_patch_probe(planted["x"], planted["parts"], NAMES, planted["hx"], shuffled).heldout_accuracy < 0.7


def test_best_latents_picks_the_planted_latent_per_part(planted):
    chosen = best_latents(planted["codes"], planted["parts"], NAMES)
    assert set(chosen) == {1, 2}  # background is never a target
    assert chosen[1][0] == 0 and chosen[2][0] == 1
    assert chosen[1][1] > 0.99
    assert best_latents(planted["codes"], planted["parts"], NAMES, min_patches=10_000) == {}


def test_best_latents_ranks_by_f1_not_by_hits():
    parts_BG = np.array([[0, 0, 1, 1, 2, 2] * 5])
    codes_BGS = torch.zeros(1, 30, 3)
    codes_BGS[..., 0] = 1.0  # fires everywhere: every wing patch, F1 = 2·10 / (30 + 10) = 0.5
    codes_BGS[0, parts_BG[0] == 1, 2] = 0.3  # fires on the wing patches only: F1 = 1
    assert best_latents(codes_BGS, parts_BG, NAMES, min_patches=5) == {1: (2, 1.0), 2: (0, 0.5)}


def test_suppressing_the_part_latent_changes_that_part_only_and_beats_both_baselines(planted):
    chosen = best_latents(planted["codes"], planted["parts"], NAMES)
    rows = measure_parts(planted["probe"], planted["hx"].reshape(-1, D), planted["hcodes"], planted["hparts"], chosen,
                         planted["max_act"], planted["sae"].W_dec.detach(), draws=5, seed=0)  # fmt: skip
    for row in rows:
        assert row["target_change"] > 0.9 and row["other_change"] < 0.1
        for base in ("random_latent", "random_direction"):
            assert row["target_change"] > row[base]["target_change"] + 0.5
        assert row["latent"] not in row["random_latent"]["latents"] and len(row["random_latent"]["latents"]) == 5
    alive_S = np.where(np.isin(np.arange(S), [0, 5]), planted["max_act"], 0.0)  # only latents 0 and 5 ever fire
    rows = measure_parts(planted["probe"], planted["hx"].reshape(-1, D), planted["hcodes"], planted["hparts"], {1: chosen[1]},
                         alive_S, planted["sae"].W_dec.detach(), draws=5, seed=0)  # fmt: skip
    assert rows[0]["random_latent"]["latents"] == [5]  # alive, and not the part's own latent


def test_change_rates_are_those_of_the_spliced_tokens():
    sae = random_sae(D, d_sae=S, arch="topk", k=4, seed=3)
    layout = TokenLayout("sequence", D, (4, 4), n_cls=1)
    x_BND = torch.randn(6, 1 + G, D, generator=torch.Generator().manual_seed(2))
    x_TD = x_BND[:, 1:].reshape(-1, D)
    codes_TS = sae.encode(x_TD).dense().detach()
    latent = int(codes_TS.count_nonzero(0).argmax())
    value = -2.0 * float(codes_TS[:, latent].max())
    spliced_TD = splice_tokens(x_BND, layout, sae, Edit(ops=[LatentOp(latents=[latent], op="set", value=value, where="all")]))[:, 1:]
    mine_TD = suppressed(x_TD, codes_TS[:, latent], value, sae.W_dec[latent].detach())
    torch.testing.assert_close(mine_TD, spliced_TD.reshape(-1, D), rtol=1e-5, atol=1e-5)
    direct_TD = x_TD + (value - codes_TS[:, latent])[:, None] * sae.W_dec[latent].detach()  # x + (z_edit − z)·W_dec
    labels_T = torch.randint(0, 3, (len(x_TD),), generator=torch.Generator().manual_seed(4))
    probe = train_patch_probe(x_TD[None], labels_T[None], NAMES, x_TD[None], labels_T[None])
    before_T, target_T = probe.predict(x_TD), labels_T == 1
    changed_T = probe.predict(direct_TD) != before_T
    got = change_rates(probe, x_TD, before_T, codes_TS[:, latent], value, sae.W_dec[latent].detach(), target_T)
    assert got == (float(changed_T[target_T].float().mean()), float(changed_T[~target_T].float().mean()))
    assert 0 < sum(got)  # the edit does something, so the comparison is not vacuous


@pytest.fixture(scope="module")
def run_eval(synth_run):
    from visae.steering.session import Steerer

    s = Steerer.open(synth_run["run"], device="cpu")
    imgs = s.images(s.eval_split(), s.sample_indices(s.eval_split(), 64))
    x_BND = s.layer_tokens(imgs.pixels_BCHW)
    codes_BGS = s.patch_codes(x_BND)
    return s, imgs, x_BND, codes_BGS


def test_segmentation_eval_on_a_real_run_gives_the_documented_table(run_eval, tmp_path):
    s, imgs, x_BND, codes_BGS = run_eval
    out = segmentation_eval(s, imgs, x_BND, codes_BGS, train_images=150, draws=2)
    json.dumps(out)
    assert out["scale"] == -2.0 and out["draws"] == 2
    probe = out["probe"]
    assert 0 <= probe["accuracy"] <= 1 and 0 <= probe["chance"] <= 1
    assert probe["patches"] == codes_BGS.shape[0] * codes_BGS.shape[1] and probe["train_images"] == 150
    assert out["parts"], "the synthetic aircraft have parts a latent fires on"
    keys = {"part", "latent", "f1", "patches", "target_change", "other_change", "random_latent", "random_direction"}
    for row in out["parts"] + [out["macro"]]:
        assert keys - {"part", "latent", "f1", "patches"} <= set(row)
        rates = [row["target_change"], row["other_change"]] + [row[b][k] for b in ("random_latent", "random_direction")
                                                              for k in ("target_change", "other_change")]  # fmt: skip
        assert all(r is None or 0 <= r <= 1 for r in rates)
    assert all(keys <= set(row) and row["part"] != "background" for row in out["parts"])
    plot_segmentation(out, tmp_path / "seg.png")
    assert (tmp_path / "seg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.png"]  # no temporary left


def test_the_probe_and_latents_never_train_on_the_evaluation_images():
    steerer = SimpleNamespace(store_split="train", split=lambda name: range(300),
                              images=lambda split, idx: (split, idx))  # fmt: skip
    eval_set = SimpleNamespace(split="train", index_B=np.arange(0, 300, 2))
    n, chunks = training_sets(steerer, eval_set, 1000, seed=0)
    used = np.concatenate([idx for split, idx in chunks])
    assert n == len(used) == 150 and not np.isin(used, eval_set.index_B).any()
    n, chunks = training_sets(steerer, SimpleNamespace(split="val", index_B=eval_set.index_B), 100, seed=0)
    assert n == 100 and len(np.unique(np.concatenate([idx for _, idx in chunks]))) == 100


def test_images_without_part_masks_are_refused(run_eval):
    s, imgs, x_BND, codes_BGS = run_eval
    bare = dataclasses.replace(imgs, parts_BG=None)
    with pytest.raises(VisaeError, match="no part masks"):
        segmentation_eval(s, bare, x_BND, codes_BGS, train_images=10)
    with pytest.raises(VisaeError, match="no part masks"):
        segmentation_eval(s, imgs, x_BND, codes_BGS, train_set=bare)


def test_folder_masks_reads_label_pngs_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    left_HW = np.zeros((32, 32), dtype=np.uint8)
    left_HW[:, :16] = 2
    Image.fromarray(left_HW, mode="L").save(tmp_path / "a" / "x.png")
    Image.fromarray(np.full((32, 32), 1, dtype=np.uint8), mode="L").save(tmp_path / "y.png")
    pre = Preprocess(size=32)
    parts_BG, names = folder_masks(tmp_path, ["a/x.jpg", "y.jpeg"], pre, (2, 2))
    assert parts_BG.tolist() == [[2, 0, 2, 0], [1, 1, 1, 1]]
    assert names == ["background", "part_1", "part_2"]
    (tmp_path / "parts.json").write_text(json.dumps(["bg", "wing", "tail", "nose"]))
    assert folder_masks(tmp_path, ["y.jpeg"], pre, (2, 2))[1] == ["bg", "wing", "tail", "nose"]
    with pytest.raises(VisaeError, match="32x32 but its image is 40x32"):
        folder_masks(tmp_path, ["y.jpeg"], pre, (2, 2), sizes=[(40, 32)])


@pytest.mark.parametrize("case", ["missing", "not_an_image", "rgb"])
def test_folder_masks_refuses_a_bad_mask_naming_the_file(tmp_path, case):
    if case == "not_an_image":
        (tmp_path / "m.png").write_text("not a png")
    elif case == "rgb":
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(VisaeError, match="m.png"):
        folder_masks(tmp_path, ["m.jpg"], Preprocess(size=8), (2, 2))
