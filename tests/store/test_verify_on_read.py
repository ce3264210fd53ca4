"""Every reader of a store checks each shard file against its checksum before using it, once per
file per process; a bit-flipped, truncated or deleted file stops train and analyze in one line."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import visae.checksum
from visae.cli import main
from visae.errors import VisaeError
from visae.store import Store
from visae.store.select import Selection
from visae.store.view import StoreView

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from analysis_fixtures import make_dataset, make_run, make_store  # noqa: E402


@pytest.fixture
def hashed(monkeypatch) -> Counter:
    """File name -> how many times it was hashed."""
    calls: Counter = Counter()
    real = visae.checksum.hash_file

    def counting(path, algo, *a, **kw):
        calls[Path(path).name] += 1
        return real(path, algo, *a, **kw)

    monkeypatch.setattr(visae.checksum, "hash_file", counting)
    return calls


def read_everything(path: Path) -> torch.Tensor:
    """Every way a stage reads a store: random access, whole images, training batches, samples."""
    store = Store(path)
    x = store.get(np.arange(len(store)))
    assert torch.equal(torch.cat([b.tokens_TD for b in store.iter_images(4)]), x)
    view = StoreView(store, Selection(frozenset({0})).without(np.array([1, 2])))
    assert sum(len(b) for b in view.batches(8, prefetch=1, drop_last=False)) == len(view)
    assert len(view.sample(10, seed=0)) == 10 and sum(len(c) for c in view.chunks(16)) == len(view)
    return x


def test_untouched_store_is_accepted_and_each_file_hashed_once_per_process(small_store, hashed):
    path, acts = small_store
    assert torch.equal(read_everything(path), acts)
    assert torch.equal(read_everything(path), acts)  # a second Store of the same directory
    n_shards = len(Store(path).meta.shards)
    assert n_shards == 5 and len(hashed) == 3 * n_shards, "data, index and image table of every shard"
    assert set(hashed.values()) == {1}, hashed


def test_a_file_replaced_after_its_check_is_checked_again(small_store, hashed):
    path, acts = small_store
    read_everything(path)
    f = path / "shard_000002.npy"
    shutil.copy(f, path / "copy.npy")
    (path / "copy.npy").replace(f)  # same bytes, a new file
    assert torch.equal(read_everything(path), acts)
    assert hashed["shard_000002.npy"] == 2 and hashed["shard_000001.npy"] == 1


def flip(f: Path, at: int = -3) -> None:
    data = bytearray(f.read_bytes())
    data[at] ^= 0x10
    f.write_bytes(bytes(data))


DAMAGE = {
    "flipped data": ("shard_000001.npy", flip, "fails its checksum"),
    "flipped index": ("index_000003.npy", flip, "fails its checksum"),
    "flipped image table": ("images_000002.json", lambda f: f.write_text(f.read_text().replace("img", "imh", 1)),
                            "fails its checksum"),
    "truncated data": ("shard_000004.npy", lambda f: f.write_bytes(f.read_bytes()[:-7]), "fails its checksum"),
    "deleted data": ("shard_000000.npy", Path.unlink, "is missing"),
    "deleted index": ("index_000001.npy", Path.unlink, "is missing"),
}
READERS = {
    "get": lambda s: s.get(np.arange(len(s))),
    "iter_images": lambda s: list(s.iter_images(4)),
    "batches": lambda s: list(StoreView(s, Selection(frozenset({0}))).batches(8, prefetch=1)),
    "sample": lambda s: StoreView(s).sample(40, seed=0),
    "check": Store.check,  # all files up front (analyze, train)
}
NEEDS = {"flipped index": {"iter_images", "batches", "check"}, "deleted index": {"iter_images", "batches", "check"},
         "flipped image table": {"iter_images", "check"}}  # fmt: skip
"""Readers that use the damaged file (unselected batches, get and sample never read the token index)."""


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_shard_file_is_refused_by_every_reader_that_uses_it(small_store, damage):
    path, _ = small_store
    name, hurt, what = DAMAGE[damage]
    hurt(path / name)
    for reader, read in READERS.items():
        if reader not in NEEDS.get(damage, READERS):
            continue
        with pytest.raises(VisaeError) as e:
            read(Store(path))
        msg = str(e.value)
        assert f"{name} of store {path} {what}" in msg and "--force" in msg and "\n" not in msg, (reader, msg)


def cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture
def damaged_copy(tmp_path, monkeypatch):
    """(run, good store, copy of the store with one bit flipped in shard_000002.npy)."""
    monkeypatch.setenv("VISAE_QUIET", "1")
    dataset, labels = make_dataset(tmp_path, 12)
    store = make_store(tmp_path / "store", dataset, labels)
    run = make_run(tmp_path / "run", store)
    bad = tmp_path / "bad"
    shutil.copytree(store, bad)
    flip(bad / "shard_000002.npy", at=-40)
    return run, store, bad


def test_train_and_analyze_refuse_a_bit_flipped_shard_in_one_line(damaged_copy, tmp_path, capsys):
    run, store, bad = damaged_copy
    train = ["train", "--arch", "topk", "--k", "2", "--expansion", "2", "--batch-size", "32", "--training-tokens", "320"]
    code, err = cli([*train, "--store", str(bad), "--out", str(tmp_path / "r1")], capsys)
    assert code == 2 and "shard_000002.npy" in err and "fails its checksum" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r1" / "train.json").exists(), "refused before the run directory is written"
    code, err = cli(["analyze", "--run", str(run), "--store", str(bad)], capsys)
    assert code == 2 and "shard_000002.npy" in err and "fails its checksum" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not (run / "features.sqlite").exists()
    code, err = cli([*train, "--store", str(store), "--out", str(tmp_path / "r2")], capsys)  # the original is fine
    assert code == 0, err


def test_train_and_analyze_refuse_a_deleted_or_truncated_shard(damaged_copy, tmp_path, capsys):
    run, store, bad = damaged_copy
    shutil.rmtree(bad)
    shutil.copytree(store, bad)
    (bad / "index_000001.npy").unlink()
    code, err = cli(["analyze", "--run", str(run), "--store", str(bad)], capsys)
    assert code == 2 and "index_000001.npy" in err and "is missing" in err and "Traceback" not in err, err
    shutil.copy(store / "index_000001.npy", bad)
    f = bad / "shard_000003.npy"
    f.write_bytes(f.read_bytes()[:100])
    code, err = cli(["train", "--store", str(bad), "--out", str(tmp_path / "r"), "--arch", "relu", "--expansion", "2",
                     "--batch-size", "32", "--training-tokens", "320"], capsys)  # fmt: skip
    assert code == 2 and "shard_000003.npy" in err and "Traceback" not in err, err


def test_the_statistics_file_is_checked_too(small_store):
    """The normalisation statistics (mean, scale) are read against their recorded checksum, and verify checks them;
    a store written before the checksum was recorded is still read."""
    import json

    path, acts = small_store
    meta = json.loads((path / "metadata.json").read_text())
    name = meta["stats"]["file"]
    assert meta["stats"]["checksum"].startswith(Store(path).meta.checksum + ":")
    assert torch.allclose(Store(path).mean_D, acts.mean(0), atol=1e-5)
    flip(path / name, at=-5)
    with pytest.raises(VisaeError) as e:
        Store(path).mean_D
    assert f"{name} of store {path} fails its checksum" in str(e.value)
    from visae.store.verify import verify

    assert [(p.kind, p.where) for p in verify(path).problems] == [("corrupt", name)]
    del meta["stats"]["checksum"]  # as a store from before: read unchecked, as it always was
    (path / "metadata.json").write_text(json.dumps(meta))
    assert Store(path).mean_D.shape == (5,)
