"""The two difficulties of the synth-aircraft generator, and the catalog's salient-difference rule."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from visae.data.synth import SynthAircraftConfig, generate_synth_aircraft
from visae.data.synth import catalog
from visae.data.synth.factors import sample_factors


def test_every_pair_of_variants_in_a_family_differs_in_engine_layout():
    for fam in catalog.FAMILIES:
        members = [v for v in catalog.VARIANTS if v.family == fam.name]
        for a, b in combinations(members, 2):
            assert a.engines != b.engines or abs(a.length - b.length) >= 0.3, (a.name, b.name)


def test_variants_of_different_families_differ_in_a_wing_or_tail_or_manufacturer():
    for f, g in combinations(catalog.FAMILIES, 2):
        assert (f.planform, f.wing_mount, f.tail, f.manufacturer) != (g.planform, g.wing_mount, g.tail, g.manufacturer)


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_factors_follow_the_difficulty(difficulty):
    rng = np.random.default_rng(3)
    fs = [sample_factors(rng, catalog.class_names()[i % 5], difficulty) for i in range(400)]
    elev = np.array([f["elevation"] for f in fs])
    scale = np.array([f["scale"] for f in fs])
    front = sum(d["front"] for f in fs for d in f["distractors"])
    n_distractors = np.array([len(f["distractors"]) for f in fs])
    assert all(f["difficulty"] == difficulty for f in fs)
    if difficulty == "easy":
        assert elev.min() >= 70 and scale.min() >= 0.8 and front == 0 and n_distractors.max() <= 1
    else:
        assert (elev < 0).any() and scale.min() < 0.7 and front > 0 and n_distractors.max() >= 2


def test_difficulty_is_recorded_and_changes_the_images(tmp_path):
    arrays = {}
    for d in ("easy", "hard"):
        out = generate_synth_aircraft(SynthAircraftConfig(out=tmp_path / d, n_train=22, n_val=0, n_ood=0,
                                                          difficulty=d, workers=1))
        assert json.loads((out / "info.json").read_text())["difficulty"] == d
        rows = [json.loads(r) for r in (out / "train" / "manifest.jsonl").read_text().splitlines()]
        assert {r["difficulty"] for r in rows} == {d}
        parts = np.load(out / "train" / "parts.npy")
        arrays[d] = (parts > 0).mean()
    assert arrays["easy"] > arrays["hard"]  # easy aircraft fill more of the frame


def test_unknown_difficulty_is_refused(tmp_path):
    with pytest.raises(ValueError):
        SynthAircraftConfig(out=tmp_path, difficulty="medium")
