"""Shuffled batches: deterministic by seed, every token once per epoch, exact resume from ``start``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from store_helpers import write_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visae.errors import VisaeError
from visae.store import Store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """110 tokens whose first coordinate is the token's number, in 8 shards of 16 (last: 14)."""
    path = tmp_path_factory.mktemp("stream") / "s"
    ids_T = torch.arange(110, dtype=torch.float32)
    acts = [torch.stack([ids_T[i : i + 10], torch.randn(10)], dim=1) for i in range(0, 110, 10)]
    write_store(path, acts, shard_tokens=16)
    return Store(path)


def ids(batches) -> list[list[int]]:
    return [b[:, 0].long().tolist() for b in batches]


def test_each_token_exactly_once_per_epoch(store):
    out = ids(store.batches(7, seed=3, epochs=2, buffer_tokens=40, drop_last=False))
    flat = [t for b in out for t in b]
    assert sorted(flat[:110]) == list(range(110)) and sorted(flat[110:]) == list(range(110))
    assert flat[:110] != list(range(110)), "shuffled"
    assert flat[:110] != flat[110:], "each epoch has its own order"
    assert [len(b) for b in out].count(110 % 7) == 2, "one short batch per epoch, never spanning epochs"


def test_drop_last_drops_each_epochs_tail(store):
    out = ids(store.batches(32, seed=0, epochs=3))
    assert [len(b) for b in out] == [32] * 9
    assert len(set(sum(out[:3], []))) == 96


def test_same_seed_same_stream_other_seed_other_stream(store):
    a = ids(store.batches(10, seed=5, epochs=2))
    assert a == ids(store.batches(10, seed=5, epochs=2))
    assert a == ids(store.batches(10, seed=5, epochs=2, prefetch=0))
    assert a != ids(store.batches(10, seed=6, epochs=2))


def test_unshuffled_is_sequential(store):
    assert sum(ids(store.batches(11, shuffle=False)), []) == list(range(110))


def test_shuffle_mixes_shards_within_a_window(store):
    first = ids(store.batches(16, seed=1, buffer_tokens=48))[0]
    assert len({t // 16 for t in first}) > 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 40), consumed=st.integers(0, 12), buffer=st.integers(1, 120), drop_last=st.booleans())
def test_resume_from_start_equals_uninterrupted_stream(store, batch, consumed, buffer, drop_last):
    full = ids(store.batches(batch, seed=9, epochs=3, buffer_tokens=buffer, drop_last=drop_last, prefetch=0))
    k = min(consumed, len(full))
    start = sum(len(b) for b in full[:k])
    rest = ids(store.batches(batch, seed=9, epochs=3, buffer_tokens=buffer, drop_last=drop_last, start=start, prefetch=0))
    assert rest == full[k:]


def test_infinite_stream_and_early_stop(store):
    it = store.batches(50, seed=0, epochs=None)
    got = [next(it) for _ in range(10)]  # 5 epochs of 2 batches
    it.close()
    assert all(b.shape == (50, 2) and b.dtype == torch.float32 for b in got)


def test_dtype_and_bad_arguments(store):
    assert next(store.batches(4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(VisaeError, match="fewer than one batch"):
        store.batches(1000)
    with pytest.raises(VisaeError):
        store.batches(0)


def test_errors_in_the_prefetch_thread_reach_the_consumer(store, monkeypatch):
    def boom(k, lo, out):
        raise OSError("disk gone")

    s = Store(store.path)
    monkeypatch.setattr(s, "read_rows_into", boom)
    with pytest.raises(OSError, match="disk gone"):
        list(s.batches(8))
