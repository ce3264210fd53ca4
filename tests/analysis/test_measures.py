"""Class selectivity and part purity survive their baselines: a planted store where the naive
measures would be fooled (imbalanced classes, one image filling a top-patch list, a channel
whose part response is negative), analysed with the default settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visae.analysis.baselines import headline, random_sae
from visae.analysis.db import FeatureDB
from visae.analysis.run import AnalyzeConfig, analyze, summary
from visae.reporting import ReportConfig, report

from analysis_fixtures import D, GRID, cell_parts_truth, make_dataset, make_run, make_store

N = 32
LABELS = (np.arange(N) % 4 == 3).astype(np.int64)  # 24 'jet' images, 8 'prop' images


def skewed_tokens() -> np.ndarray:
    """(N, G, D): ch0 on the wing of every image; ch1 on the wing of images 0 and 1 only, strongly;
    ch2 alike everywhere; ch3 on the tail of class-1 images; ch4 strongly *negative* on the tail
    of every image; ch5 noise. A little jitter on every response breaks ties."""
    rng = np.random.default_rng(3)
    cells = cell_parts_truth()
    wing, tail = cells == 1, cells == 2
    x = np.zeros((N, GRID * GRID, D), np.float32)

    def jitter(n: int) -> np.ndarray:
        return rng.uniform(0, 0.01, size=n)

    for i in range(N):
        x[i, wing, 0] = 1.0 + 0.01 * i + jitter(wing.sum())
        if i < 2:
            x[i, wing, 1] = 5.0 + jitter(wing.sum())
        x[i, :, 2] = 0.3 + jitter(GRID * GRID)
        if LABELS[i] == 1:
            x[i, tail, 3] = 2.0 + jitter(tail.sum())
        x[i, tail, 4] = -3.0 + jitter(tail.sum())
    x[..., 5] = rng.normal(0, 0.01, size=(N, GRID * GRID))
    return x


@pytest.fixture
def skewed(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, _ = make_dataset(tmp_path, N)
    store = make_store(tmp_path / "store", dataset, LABELS, tokens_=skewed_tokens())
    run = make_run(tmp_path / "run", store)  # an identity SAE: latent d is relu(channel d)
    analyze(AnalyzeConfig(run=run, top=4))
    return run


def test_a_uniform_latent_on_imbalanced_classes_is_not_class_selective(skewed):
    with FeatureDB(skewed) as db:
        mass = dict(db.class_mass(2))
        assert mass[0] / (mass[0] + mass[1]) == pytest.approx(0.75, abs=0.01)  # by mass it looks 75% 'jet'
        uniform = db.latent(2)
        assert uniform["class_share"] == pytest.approx(0.5, abs=0.01)  # per token of each class: no preference
        assert uniform["class_selectivity"] == pytest.approx(0.0, abs=0.02)
        assert uniform["class_selective"] == 0 and uniform["label_source"] != "class"
        prop = db.latent(3)  # fires on 'prop' images only, the minority class
        assert prop["top_class"] == 1 and prop["class_selectivity"] == pytest.approx(1.0) and prop["class_selective"] == 1


def test_a_latent_whose_top_patches_come_from_two_images_is_not_part_pure(skewed, tmp_path):
    with FeatureDB(skewed) as db:
        wing = db.latent(0)
        assert (wing["part"], wing["part_share"], wing["part_pure"]) == (1, 1.0, 1) and wing["part_images"] == 8
        few = db.latent(1)
        assert few["part_images"] == 2 and few["part_pure"] == 0 and few["part_share"] == pytest.approx(4 / 16)
        per_image = [r["n"] for r in db.query(
            "SELECT COUNT(*) AS n FROM top_patches WHERE source = 'sae' GROUP BY unit, image_index")]
        assert max(per_image) == 2  # no image gives more than two of a unit's top patches
    # without the cap, its top 16 patches are all wing cells of two images: still not pure (2 < 8 images)
    analyze(AnalyzeConfig(run=skewed, top=4, per_image=16, force=True))
    with FeatureDB(skewed) as db:
        few = db.latent(1)
        assert few["part_share"] == 1.0 and few["part_images"] == 2 and few["part_pure"] == 0


def test_raw_channels_count_with_both_signs(skewed):
    with FeatureDB(skewed) as db:
        ch = {(r["channel"], r["sign"]): r for r in db.query("SELECT * FROM channels")}
        assert len(ch) == 2 * D
        assert (ch[4, -1]["part"], ch[4, -1]["part_pure"]) == (2, 1)  # the tail, seen as a negative response
        assert ch[4, 1]["part_pure"] == 0
        assert (ch[0, 1]["part"], ch[0, 1]["part_pure"]) == (1, 1)
        assert db.latent(4)["freq"] == 0.0  # the SAE (relu of the channel) never sees the negative response
        raw_units = {r["unit"] for r in db.query("SELECT unit FROM top_patches WHERE source = 'raw'")}
        assert 2 * 4 + 1 in raw_units


def test_fractions_and_baselines_in_summary_and_report(skewed, tmp_path):
    s = summary(skewed)
    pure, sel = s["part_pure"], s["class_selective"]
    assert (pure["sae"]["n"], pure["sae"]["of"]) == (2, 6)  # wing (ch0) and prop-tail (ch3)
    assert pure["sae"]["frac"] == pytest.approx(2 / 6)
    assert pure["raw"]["of"] == 2 * D and pure["raw"]["n"] >= 3 and pure["raw"]["what"] == "signed channels"
    assert pure["random"]["of"] == 6 and 0 <= pure["random"]["frac"] <= 1
    assert sel["sae"]["of"] == 6 and sel["raw"]["of"] == 2 * D and sel["random"]["of"] == 6
    assert sel["sae"]["n"] == 1 and 0 <= sel["sae"]["median_index"] < 0.8  # the prop-tail latent only
    line = headline(pure)
    assert line.startswith("SAE 33.3% (2/6 latents) vs raw channels ") and "signed channels) vs random-init SAE " in line
    html = report(ReportConfig(run=skewed, out=tmp_path / "r.html", images=2, thumb=32)).read_text()
    for needle in ("33.3%", "2 of 6 latents", f"of {2 * D} signed channels", "random-init SAE", "Class selectivity"):
        assert needle in html


def test_random_baseline_is_seeded_and_folded_like_a_trained_sae():
    from visae.sae import SAESpec, create_sae

    sae = create_sae(SAESpec(arch="topk", d_in=4, d_sae=8, k=2))
    mean_D = torch.tensor([1.0, -2.0, 0.5, 0.0])
    before = torch.random.get_rng_state()
    a, b = random_sae(sae, mean_D, 3.0, seed=7), random_sae(sae, mean_D, 3.0, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left alone
    assert torch.equal(a.W_enc, b.W_enc) and not torch.equal(a.W_enc, random_sae(sae, mean_D, 3.0, seed=8).W_enc)
    torch.testing.assert_close(a.b_dec, mean_D)  # b_dec at the training mean
    torch.testing.assert_close(a.W_dec.norm(dim=1), torch.full((8,), 1 / 3.0))  # unit rows, scaled as folded
    assert a.spec == sae.spec and not torch.equal(a.W_enc, sae.W_enc)
    x = torch.randn(5, 4)
    assert (a.encode(x).dense() > 0).sum(1).max() <= 2  # the same architecture: top-2 per token
