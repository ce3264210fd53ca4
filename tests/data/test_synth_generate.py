"""generate_synth_aircraft: layout, manifest vs arrays, labels, determinism, refusals, interruption."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from visae.artifact import read_marker
from visae.data.base import Hierarchy, open_dataset
from visae.data.synth import PART_NAMES, SynthAircraftConfig, class_names, generate_synth_aircraft, ood_variants
from visae.data.synth import generate as gen
from visae.errors import VisaeError

SIZES = {"train": 150, "val": 40, "ood": 16}
SPLITS = list(SIZES)


def _make(out: Path, **kw) -> Path:
    args = dict(out=out, n_train=SIZES["train"], n_val=SIZES["val"], n_ood=SIZES["ood"], size=32, seed=3, workers=2)
    args.update(kw)
    return generate_synth_aircraft(SynthAircraftConfig.build(**args))


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("synth") / "ds")


def _rows(ds: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (ds / split / "manifest.jsonl").read_text().splitlines()]


def test_layout_shapes_and_info(ds: Path):
    marker = read_marker(ds)
    assert marker["kind"] == "synth-aircraft" and marker["format_version"] == 1 and marker["complete"] is True
    info = json.loads((ds / "info.json").read_text())
    assert info["format_version"] == 1 and info["generator"] == "visae.synth-aircraft"
    assert (info["seed"], info["size"], info["splits"]) == (3, 32, SIZES)
    assert info["class_names"] == class_names() and info["ood_variants"] == ood_variants()
    assert info["part_names"] == PART_NAMES
    for split, n in SIZES.items():
        images, parts = np.load(ds / split / "images.npy"), np.load(ds / split / "parts.npy")
        assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
        assert parts.shape == (n, 32, 32) and parts.dtype == np.uint8
        assert parts.max() < len(PART_NAMES)
    assert (ds / "preview.png").stat().st_size > 1000
    assert not list(ds.rglob("*.tmp"))


def test_manifest_rows_match_arrays_labels_and_hierarchy(ds: Path):
    names = class_names()
    h = Hierarchy.from_json(json.loads((ds / "hierarchy.json").read_text()))
    assert h.levels == ["variant", "family", "manufacturer"]
    for split in SPLITS:
        rows = _rows(ds, split)
        parts = np.load(ds / split / "parts.npy")
        assert [r["index"] for r in rows] == list(range(SIZES[split]))
        assert [r["id"] for r in rows] == [f"{split}/{i:06d}" for i in range(SIZES[split])]
        for r, p in zip(rows, parts):
            assert r["family"] == h.ancestor(r["variant"], "family")
            assert r["manufacturer"] == h.ancestor(r["variant"], "manufacturer")
            if split == "ood":
                assert r["variant"] in ood_variants() and r["label"] == -1
            else:
                assert 0 <= r["label"] < len(names) and names[r["label"]] == r["variant"]
            # gear is in the part map only when the manifest says it is down
            assert r["gear_down"] or not (p == PART_NAMES.index("gear")).any()
            assert (p == PART_NAMES.index("propeller")).any() <= (r["engines"] in ("nose_prop", "wing_props2", "wing_props4"))
        for key in ("planform", "wing_mount", "engines", "tail", "window_rows", "heading", "elevation", "scale",
                    "flip", "colours", "background", "distractors"):
            assert key in rows[0]


def test_classes_are_balanced(ds: Path):
    counts = Counter(r["label"] for r in _rows(ds, "train"))
    assert set(counts) == set(range(len(class_names())))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_every_part_appears_somewhere(ds: Path):
    seen = set()
    for split in SPLITS:
        seen |= set(np.unique(np.load(ds / split / "parts.npy")).tolist())
    assert seen == set(range(len(PART_NAMES)))


def test_same_seed_same_bytes_whatever_the_workers_and_other_seed_differs(ds: Path, tmp_path: Path):
    again = _make(tmp_path / "again", workers=1)
    for split in SPLITS:
        for name in ("images.npy", "parts.npy", "manifest.jsonl"):
            assert (again / split / name).read_bytes() == (ds / split / name).read_bytes(), (split, name)
    for name in ("info.json", "hierarchy.json"):
        assert (again / name).read_bytes() == (ds / name).read_bytes()
    other = _make(tmp_path / "other", seed=4, n_train=30, n_val=0, n_ood=0)
    a, b = np.load(other / "train" / "images.npy"), np.load(ds / "train" / "images.npy")[:30]
    assert (a != b).mean() > 0.5


def test_reader_opens_the_generated_dataset(ds: Path):
    d = open_dataset(f"synth-aircraft:{ds}")
    assert d.class_names == class_names() and d.part_names == PART_NAMES
    s = d.split("val")[5]
    assert s.image_HWC.shape == (32, 32, 3) and s.parts_HW.shape == (32, 32)
    assert s.label == _rows(ds, "val")[5]["label"]


@given(seed=st.integers(0, 2**32), n=st.integers(0, 300))
def test_assignment_is_balanced_over_the_split_variants(seed, n):
    v = gen.assign_variants(seed, 0, "train", n)
    counts = Counter(v)
    assert len(v) == n and set(counts) <= set(class_names())
    assert n == 0 or max(counts.values()) - min(counts.get(c, 0) for c in class_names()) <= 1
    assert set(gen.assign_variants(seed, 2, "ood", n)) <= set(ood_variants())


@pytest.mark.parametrize(
    "bad, field",
    [(dict(size=16), "size"), (dict(n_train=5), "n_train"), (dict(n_val=-1), "n_val"),
     (dict(n_train=0, n_val=0, n_ood=0), "nothing"), (dict(workers=0), "workers"), (dict(n_ood=10**9), "n_ood")],
)
def test_bad_config_is_refused_with_a_clear_message(tmp_path: Path, bad: dict, field: str):
    with pytest.raises(VisaeError, match=field):
        SynthAircraftConfig.build(out=tmp_path / "x", **bad)
    assert not (tmp_path / "x").exists()


def test_other_artifact_is_refused_without_force(tmp_path: Path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "visae.json").write_text(json.dumps({"kind": "sae-run"}))
    (out / "weights.bin").write_bytes(b"x")
    with pytest.raises(VisaeError, match="already holds a visae sae-run") as e:
        _make(out, n_train=30, n_val=0, n_ood=0)
    assert "--force" in e.value.hint and (out / "weights.bin").exists()
    _make(out, n_train=30, n_val=0, n_ood=0, force=True)
    assert read_marker(out)["kind"] == "synth-aircraft" and not (out / "weights.bin").exists()


def test_interrupted_generation_leaves_no_file_under_a_final_name(tmp_path: Path, monkeypatch):
    calls = {"n": 0}
    real = gen.render_chunk

    def flaky(rng, factors, size):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(rng, factors, size)

    monkeypatch.setattr(gen, "render_chunk", flaky)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        _make(out, n_train=gen.CHUNK + 10, n_val=0, n_ood=0, workers=1)
    assert read_marker(out)["complete"] is False
    assert not list(out.rglob("*.tmp"))
    assert not (out / "train" / "images.npy").exists() and not (out / "info.json").exists()
    with pytest.raises(VisaeError, match="incomplete"):
        open_dataset(f"synth-aircraft:{out}")
    with pytest.raises(VisaeError, match="already holds"):
        _make(out, n_train=30, n_val=0, n_ood=0)
    monkeypatch.setattr(gen, "render_chunk", real)
    _make(out, n_train=30, n_val=0, n_ood=0, force=True)
    assert read_marker(out)["complete"] is True
