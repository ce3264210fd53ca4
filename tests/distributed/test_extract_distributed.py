"""``torchrun --nproc-per-node 2 -m visae extract``: the merged store equals a single-process one, a lost rank
stops the job with a one-line error, and rerunning the command resumes and completes it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dist_helpers import launch

from visae.store import Store
from visae.store.verify import verify

LAYER = "encoder.stages.1"


def _visae(*args, ranks: int = 0, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return launch(["-m", "visae", *args], ranks=ranks, timeout=timeout, quiet=False, **env)  # rank 0 speaks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data spec, model spec, reference single-process store) on 60 synthetic 32 px images."""
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    root = tmp_path_factory.mktemp("dist_extract")
    torch.manual_seed(0)
    model = root / "convnext"
    ConvNextModel(ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=16)).save_pretrained(model)
    ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0).save_pretrained(model)
    from visae.data.synth import generate_synth_aircraft
    from visae.data.synth.generate import SynthAircraftConfig
    from visae.extraction.config import ExtractConfig
    from visae.extraction.run import extract

    generate_synth_aircraft(SynthAircraftConfig(out=root / "data", n_train=60, n_val=0, n_ood=0, size=32, workers=1))
    data, spec = f"synth-aircraft:{root / 'data'}", f"hf:{model}"
    extract(ExtractConfig(model=spec, layer=LAYER, data=data, out=root / "ref", dtype="fp32", batch_size=8,
                          shard_tokens=48, device="cpu"))  # the single-process reference, as `visae extract` runs it
    return spec, data, Store(root / "ref"), root


def _args(model: str, data: str, out: Path) -> list:
    # batches of 8 (rank 0: 4 batches, rank 1: the last 4 of 60 images); 16 tokens per image; 48-token shards,
    # so each rank's share ends in a partial shard
    return ["extract", "--model", model, "--layer", LAYER, "--data", data, "--out", out, "--dtype", "fp32",
            "--batch-size", 8, "--shard-tokens", 48, "--device", "cpu"]  # fmt: skip


def _same(a: Store, b: Store) -> None:
    assert len(a) == len(b) and a.n_images == b.n_images and a.meta.planned_images == b.meta.planned_images
    assert np.array_equal(a.read_range(0, len(a)), b.read_range(0, len(b)))  # bit-identical fp32 tokens
    assert np.array_equal(a.index, b.index)
    ta, tb = a.images, b.images
    for c in ("image", "label", "token_start", "n_tokens"):
        assert np.array_equal(ta[c], tb[c]), c
    assert list(ta["id"]) == list(tb["id"])
    assert a.meta.stats.n == b.meta.stats.n == len(a)
    assert torch.allclose(a.mean_D, b.mean_D, rtol=1e-6, atol=1e-7) and torch.allclose(a.var_D, b.var_D, rtol=1e-6, atol=1e-7)
    assert abs(a.mean_sq_norm - b.mean_sq_norm) <= 1e-6 * abs(b.mean_sq_norm)
    assert [s.model_dump() for s in a.meta.skipped] == [s.model_dump() for s in b.meta.skipped]
    assert a.meta.config == b.meta.config and a.meta.layout == b.meta.layout


def test_two_ranks_equal_one_process(setup):
    spec, data, ref, root = setup
    out = root / "two"
    r = _visae(*_args(spec, data, out), ranks=2)
    assert r.returncode == 0, r.stderr[-3000:]
    merged = Store(out)
    _same(merged, ref)
    assert len(merged.meta.shards) > len(ref.meta.shards)  # each share ends in its own partial shard
    assert not (out / ".ranks").exists() and not (out / ".visae.lock").exists()
    assert verify(out).ok
    from typer.testing import CliRunner

    from visae.cli import app

    v = CliRunner().invoke(app, ["store", "verify", str(out)])
    assert v.exit_code == 0, v.output
    # rerunning the finished command reuses the store
    again = _visae(*_args(spec, data, out), ranks=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already extracted" in again.stderr
    _same(Store(out), ref)


def test_lost_rank_stops_the_job_then_resumes(setup):
    spec, data, ref, root = setup
    out = root / "lost"
    t0 = time.monotonic()
    r = _visae(*_args(spec, data, out), ranks=2, VISAE_DIST_TIMEOUT="10", VISAE_TEST_STALL="1:2")
    took = time.monotonic() - t0
    assert r.returncode != 0
    assert "another rank stopped answering within 10 s" in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "another rank stopped answering" in line]
    assert errors and all("Traceback" not in line for line in errors)
    assert took < 2 * 10 + 90  # the timeout, plus starting two processes on a busy CPU (far below the 300 s default)
    # rank 0's share is complete, rank 1 stopped after committing some shards; nothing merged yet
    m0 = json.loads((out / ".ranks" / "0" / "metadata.json").read_text())
    m1 = json.loads((out / ".ranks" / "1" / "metadata.json").read_text())
    assert m0["complete"] and not m1["complete"] and m1["shards"]
    assert json.loads((out / "metadata.json").read_text())["shards"] == []
    r = _visae(*_args(spec, data, out), ranks=2)
    assert r.returncode == 0, r.stderr[-3000:]
    _same(Store(out), ref)
    assert verify(out).ok and not (out / ".ranks").exists()
