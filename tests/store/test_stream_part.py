"""Per-rank parts of the stream (``part=(r, R)``): disjoint reads, equal epochs, exact resume, selections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import write_store, write_vit_like_store

from visae.errors import VisaeError
from visae.sae.source import TensorSource
from visae.store import Store
from visae.store.select import Selection

BLOCK, BUFFER = 5, 40
"""Small blocks and windows: dozens of blocks, several windows per rank."""


def id_store(path, n_tokens: int, shard_tokens: int) -> Store:
    """Images of 10 tokens whose first coordinate is the token's number."""
    ids_T = torch.arange(n_tokens, dtype=torch.float32)
    acts = [torch.stack([ids_T[i : i + 10], torch.randn(10)], dim=1) for i in range(0, n_tokens, 10)]
    write_store(path, acts, shard_tokens=shard_tokens)
    return Store(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """230 tokens in shards of 64, 64, 64 and 38: blocks of 5 tokens and short blocks at shard ends."""
    return id_store(tmp_path_factory.mktemp("part") / "s", 230, 64)


@pytest.fixture(scope="module")
def even_store(tmp_path_factory) -> Store:
    """240 tokens in 4 shards of 60: 48 blocks of 5, as many tokens on every rank for R in (2, 3)."""
    return id_store(tmp_path_factory.mktemp("even") / "s", 240, 60)


@pytest.fixture(scope="module")
def kinds_store(tmp_path_factory) -> Store:
    """30 images of 1 CLS token (value 1000 + image) then 4 patches (value 10 * image + cell), shards of 16."""
    return Store(write_vit_like_store(tmp_path_factory.mktemp("kinds") / "s", 30))


def ids(batches) -> list[list[int]]:
    return [b[:, 0].long().tolist() for b in batches]


def ranks(source, R: int, batch: int, **kw) -> list[list[list[int]]]:
    """Every rank's batches (ids), rank after rank."""
    return [ids(source.batches(batch, part=(r, R), **kw)) for r in range(R)]


def flat(batches: list[list[int]]) -> list[int]:
    return [t for b in batches for t in b]


# ---------------------------------------------------------------- one epoch


@pytest.mark.parametrize("R", [2, 3])
@pytest.mark.parametrize("batch", [1, 4])
def test_ranks_read_disjoint_tokens_that_cover_the_epoch(store, R, batch):
    out = ranks(store, R, batch, seed=3, buffer_tokens=BUFFER, block_tokens=BLOCK, prefetch=0)
    every = [t for r in out for t in flat(r)]
    assert len(every) == len(set(every)), "no token on two ranks, nor twice on one"
    assert set(every) <= set(range(230))
    dropped = 230 - len(every)
    assert 0 <= dropped < R * (BLOCK + batch), dropped
    assert len({len(r) for r in out}) == 1, "every rank yields the same number of batches"
    assert all(len(b) == batch for r in out for b in r)
    assert flat(out[0]) != sorted(flat(out[0])), "shuffled"


@pytest.mark.parametrize("R", [2, 3])
def test_each_rank_reads_only_its_own_blocks(even_store, monkeypatch, R):
    s = Store(even_store.path)
    reads: list[tuple[int, int, int]] = []
    def read(k, lo, out):  # out is a slice of the rank's window buffer
        reads.append((k, lo, out.base.shape[0]))
        even_store.read_rows_into(k, lo, out)

    monkeypatch.setattr(s, "read_rows_into", read)
    per_rank = []
    for r in range(R):
        reads.clear()
        got = ids(s.batches(4, part=(r, R), seed=7, buffer_tokens=BUFFER, block_tokens=BLOCK, prefetch=0))
        assert sorted(flat(got)) == sorted(set(flat(got)))
        assert max(n for _, _, n in reads) <= BUFFER // R, "a rank's windows hold buffer_tokens // R tokens"
        per_rank.append({(k, lo) for k, lo, _ in reads})
        # the rank's blocks: positions r, r + R, ... of the epoch's block order (12 blocks per shard)
        order = np.random.default_rng([7, 0]).permutation(48)[r::R]
        assert per_rank[-1] == {(int(b) // 12, int(b) % 12 * BLOCK) for b in order}
    assert all(not (a & b) for i, a in enumerate(per_rank) for b in per_rank[i + 1 :]), "no block read by two ranks"
    assert set().union(*per_rank) == {(k, lo) for k in range(4) for lo in range(0, 60, BLOCK)}


def test_reads_are_disjoint_and_skip_unselected_blocks(store, monkeypatch):
    s = Store(store.path)
    held = np.array([1, 2, 3, 11, 12])  # tokens 10..39, 110..129: blocks 10..35 of shard 0 and 50..60 of shard 1 hold none
    reads: list[tuple[int, int]] = []
    monkeypatch.setattr(s, "read_rows_into", lambda k, lo, out: reads.append((k, lo)) or store.read_rows_into(k, lo, out))
    per_rank = []
    for r in range(3):
        reads.clear()
        list(s.batches(1, part=(r, 3), seed=1, selection=Selection().without(held), buffer_tokens=BUFFER, block_tokens=BLOCK))
        per_rank.append(set(reads))
    assert all(not (a & b) for i, a in enumerate(per_rank) for b in per_rank[i + 1 :])
    every = set().union(*per_rank)
    sizes = [64, 64, 64, 38]
    selected = {(k, lo) for k in range(4) for lo in range(0, sizes[k], BLOCK)
                if any((64 * k + t) // 10 not in held for t in range(lo, min(lo + BLOCK, sizes[k])))}  # fmt: skip
    assert every <= selected and len(selected - every) <= 3, "only blocks with a selected token, nearly all of them"
    assert (0, 15) not in every and (1, 50) not in every


# ---------------------------------------------------------------- epochs and resume


@pytest.mark.parametrize("R", [2, 3])
def test_every_rank_has_the_same_epochs_and_epochs_differ(store, R):
    kw = dict(seed=5, buffer_tokens=BUFFER, block_tokens=BLOCK, prefetch=0)
    one = ranks(store, R, 6, epochs=1, **kw)
    two = ranks(store, R, 6, epochs=2, **kw)
    assert len({len(r) for r in two}) == 1
    for r in range(R):
        n = len(one[r])
        assert two[r][:n] == one[r], "the first epoch does not depend on how many follow"
        assert two[r][n:] != two[r][:n] and len(two[r]) > n
        assert len(set(flat(two[r][n:]))) == len(flat(two[r][n:])), "a token at most once per epoch"
    assert len({len(r) for r in one}) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(R=st.integers(2, 3), batch=st.integers(1, 12), consumed=st.integers(0, 60), buffer=st.integers(1, 90),
       block=st.integers(1, 9))  # fmt: skip
def test_resume_from_start_equals_the_uninterrupted_rank_stream(store, R, batch, consumed, buffer, block):
    kw = dict(seed=9, epochs=3, buffer_tokens=buffer, block_tokens=block, prefetch=0)
    for r in range(R):
        full = ids(store.batches(batch, part=(r, R), **kw))
        k = min(consumed, len(full))
        assert ids(store.batches(batch, part=(r, R), start=k * batch, **kw)) == full[k:]


def test_resume_skips_whole_windows_without_reading_them(even_store, monkeypatch):
    s = Store(even_store.path)
    reads: list[int] = []
    monkeypatch.setattr(s, "read_rows_into", lambda k, lo, out: reads.append(k) or even_store.read_rows_into(k, lo, out))
    kw = dict(part=(1, 2), seed=2, buffer_tokens=BUFFER, block_tokens=BLOCK, prefetch=0)
    list(s.batches(4, **kw))
    n_all = len(reads)
    reads.clear()
    list(s.batches(4, start=100, **kw))  # 5 of the rank's 6 windows (of 4 blocks) consumed
    assert n_all == 24 and len(reads) == 4


# ---------------------------------------------------------------- selections, part=None, errors


@pytest.mark.parametrize("R", [2, 3])
def test_a_selection_is_honoured_on_every_rank(kinds_store, R):
    held = [3, 4, 17]
    sel = Selection(frozenset({0})).without(np.array(held))
    kw = dict(seed=4, selection=sel, buffer_tokens=12, block_tokens=3, prefetch=0)
    allowed = {10 * i + c for i in range(30) if i not in held for c in range(4)}
    first = [t for r in ranks(kinds_store, R, 3, epochs=1, **kw) for t in flat(r)]
    assert set(first) <= allowed and len(first) == len(set(first)), "patches of kept images only, once"
    assert len(allowed) - len(first) < R * (3 + 3)
    assert {t for r in ranks(kinds_store, R, 3, epochs=3, **kw) for t in flat(r)} <= allowed


def test_part_none_is_the_single_stream(store):
    kw = dict(seed=3, epochs=2, buffer_tokens=BUFFER, block_tokens=BLOCK, prefetch=0)
    assert ids(store.batches(7, part=None, **kw)) == ids(store.batches(7, **kw))
    src = TensorSource(torch.randn(50, 3))
    assert [b.tolist() for b in src.batches(4, part=None, epochs=2)] == [b.tolist() for b in src.batches(4, epochs=2)]


def test_bad_parts_are_refused(store):
    with pytest.raises(VisaeError, match="drop_last"):
        store.batches(4, part=(0, 2), drop_last=False)
    with pytest.raises(VisaeError, match="3 ranks") as e:
        store.batches(80, part=(1, 3), block_tokens=BLOCK)
    assert "fewer ranks" in str(e.value)
    with pytest.raises(VisaeError, match="rank"):
        store.batches(4, part=(2, 2))
    assert len(list(store.batches(76, part=(0, 3), block_tokens=1))) == 1, "76 of the 230 tokens fit every rank"


# ---------------------------------------------------------------- in-memory source


@pytest.fixture(scope="module")
def tensor_source() -> TensorSource:
    return TensorSource(torch.stack([torch.arange(103, dtype=torch.float32), torch.randn(103)], dim=1))


@pytest.mark.parametrize("R", [2, 3])
def test_tensor_source_parts(tensor_source, R):
    one = ranks(tensor_source, R, 5, seed=1, epochs=1)
    every = [t for r in one for t in flat(r)]
    assert len(every) == len(set(every)) and set(every) <= set(range(103))
    assert 103 - len(every) < R * 5 + R
    assert len({len(r) for r in one}) == 1 and len(one[0]) == (103 // R) // 5
    two = ranks(tensor_source, R, 5, seed=1, epochs=2)
    for r in range(R):
        n = len(one[r])
        assert two[r][:n] == one[r] and two[r][n:] != one[r]
        for k in (0, 3, n, n + 2, 2 * n):
            assert ids(tensor_source.batches(5, part=(r, R), seed=1, epochs=2, start=k * 5)) == two[r][k:]


def test_tensor_source_bad_parts(tensor_source):
    with pytest.raises(VisaeError, match="drop_last"):
        next(tensor_source.batches(4, part=(0, 2), drop_last=False))
    with pytest.raises(VisaeError, match="3 ranks"):
        next(tensor_source.batches(40, part=(0, 3)))
