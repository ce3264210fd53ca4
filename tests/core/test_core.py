"""The shared plumbing every stage relies on: errors, registries, configs, atomic writes, artifacts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visae import atomic
from visae.artifact import prepare_out, read_marker, require, write_marker
from visae.config import Config
from visae.data.transforms import Preprocess
from visae.errors import VisaeError, did_you_mean
from visae.lock import LOCK_NAME, locked
from visae.registry import Registry, split_spec


def test_registry_unknown_name_suggests_the_closest():
    reg: Registry[int] = Registry("widget")
    reg.register("encoder.stages.3")(1)
    reg.register("encoder.stages.2")(2)
    with pytest.raises(VisaeError, match=r"unknown widget 'encoder.stage.3'.*did you mean 'encoder.stages.3'"):
        reg.get("encoder.stage.3")
    assert reg.get("encoder.stages.2") == 2
    with pytest.raises(ValueError):
        reg.register("encoder.stages.2")(3)


def test_did_you_mean_is_empty_when_nothing_is_close():
    assert did_you_mean("zzz", ["alpha", "beta"]) == ""


@pytest.mark.parametrize(
    "spec,expected",
    [("folder:/a/b", ("folder", "/a/b")), ("mnist5k", ("mnist5k", "")), ("HF:x:val", ("hf", "x:val"))],
)
def test_split_spec(spec, expected):
    assert split_spec(spec) == expected


class _Cfg(Config):
    lr: float = 1e-3
    """Learning rate."""
    k: int = 32
    """Active latents."""


def test_config_bad_value_is_a_one_line_error_and_docstrings_are_kept(tmp_path):
    with pytest.raises(VisaeError, match="bad value for 'k'"):
        _Cfg.build(k="many")
    with pytest.raises(VisaeError, match="bad value for 'unknown'"):
        _Cfg.build(unknown=1)
    assert _Cfg.model_fields["lr"].description == "Learning rate."
    f = tmp_path / "c.toml"
    f.write_text("lr = 0.5\nk = 8\n")
    assert _Cfg.from_toml(f, k=4) == _Cfg(lr=0.5, k=4)
    assert _Cfg.from_toml(f, k=None).k == 8
    f.write_text("lr = [")
    with pytest.raises(VisaeError, match="not valid TOML"):
        _Cfg.from_toml(f)


def test_atomic_write_leaves_old_file_intact_on_failure(tmp_path):
    target = tmp_path / "x.json"
    atomic.write_json(target, {"a": 1})

    def boom(path):
        path.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic.write_with(target, boom)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_prepare_out_refuses_other_artifacts_and_resumes_its_own(tmp_path):
    out = tmp_path / "run"
    with locked(out):
        prepare_out(out, "store")
        write_marker(out, "store", format_version=1)
        (out / "shard.npy").write_bytes(b"x")
        with pytest.raises(VisaeError, match="already holds a visae store.*--resume"):
            prepare_out(out, "store")
        assert prepare_out(out, "store", resume=True) == out
        assert (out / "shard.npy").exists()
        with pytest.raises(VisaeError, match="already holds a visae store; pass --force"):
            prepare_out(out, "sae-run", resume=True)
        prepare_out(out, "sae-run", force=True)
        assert [p.name for p in out.iterdir()] == [LOCK_NAME], "wiped, but the lock file is kept"
    with pytest.raises(RuntimeError, match="without its lock"):
        prepare_out(out, "store")


def test_prepare_out_never_deletes_foreign_files_even_with_force(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with locked(tmp_path), pytest.raises(VisaeError, match="did not write"):
        prepare_out(tmp_path, "store", force=True)
    assert (tmp_path / "thesis.tex").exists()


def test_require_names_the_wrong_kind(tmp_path):
    write_marker(tmp_path, "store")
    assert read_marker(tmp_path)["kind"] == "store"
    with pytest.raises(VisaeError, match="is a visae store, not a sae-run"):
        require(tmp_path, "sae-run", "--run")
    with pytest.raises(VisaeError, match="no such directory"):
        require(tmp_path / "nope", "store", "--store")


@settings(max_examples=25, deadline=None)
@given(h=st.integers(16, 80), w=st.integers(16, 80), size=st.integers(8, 32), crop=st.floats(0.5, 1.0))
def test_preprocess_single_and_batched_agree_in_shape_and_crop_box_is_inside(h, w, size, crop):
    p = Preprocess(size=size, crop_pct=crop)
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    one, many = p(img), p.batch(img[None])
    assert one.shape == many.shape[1:] == (3, size, size)
    top, left, ch, cw = p.crop_box(h, w)
    assert 0 <= top and 0 <= left and top + ch <= h + 1e-6 and left + cw <= w + 1e-6


def test_preprocess_normalises_with_mean_and_std():
    p = Preprocess(size=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    white = np.full((4, 4, 3), 255, dtype=np.uint8)
    assert torch.allclose(p(white), torch.ones(3, 4, 4))
