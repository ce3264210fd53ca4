"""Training batches are i.i.d.-like on class-sorted stores, and follow a token Selection exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import write_store, write_vit_like_store

from visae.errors import VisaeError
from visae.store import Store
from visae.store.select import Selection, holdout_images, token_kinds
from visae.store.view import StoreView

N_CLASSES, PER_CLASS, PER_IMAGE = 20, 1200, 40
"""A class-sorted store: 20 classes x 30 images x 40 tokens, image after image, class after class."""


@pytest.fixture(scope="module")
def sorted_store(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("sorted") / "s"
    ids_T = torch.arange(N_CLASSES * PER_CLASS, dtype=torch.float32)
    acts = [torch.stack([ids_T[i : i + PER_IMAGE], torch.randn(PER_IMAGE)], dim=1) for i in range(0, len(ids_T), PER_IMAGE)]
    write_store(path, acts, shard_tokens=1024)
    return Store(path)


def class_hist(batches: list[torch.Tensor]) -> np.ndarray:
    cls = torch.cat([b[:, 0] for b in batches]).long() // PER_CLASS
    return np.bincount(cls.numpy(), minlength=N_CLASSES) / len(cls)


def test_consecutive_batches_of_a_class_sorted_store_follow_the_global_class_histogram(sorted_store):
    """Any 10 consecutive batches: total variation distance to the (uniform) global histogram <= 0.15.

    The window (8,192 tokens) is a third of the store, as 256 MiB is of a 768 MiB store: the
    old stream (whole neighbouring shards per window) gave distances near 0.8 here."""
    it = sorted_store.batches(256, seed=0, epochs=1, buffer_tokens=8192, block_tokens=16)
    batches = list(it)
    assert len(batches) == N_CLASSES * PER_CLASS // 256
    tv = [0.5 * np.abs(class_hist(batches[i : i + 10]) - 1 / N_CLASSES).sum() for i in range(len(batches) - 9)]
    assert max(tv) <= 0.15, max(tv)
    seq = list(sorted_store.batches(256, shuffle=False))
    assert 0.5 * np.abs(class_hist(seq[:10]) - 1 / N_CLASSES).sum() > 0.8, "the store really is class-sorted"


def test_blocks_stay_inside_shards_and_every_token_comes_once(sorted_store):
    out = torch.cat(list(sorted_store.batches(100, seed=4, buffer_tokens=3000, block_tokens=700, drop_last=False)))
    assert sorted(out[:, 0].long().tolist()) == list(range(N_CLASSES * PER_CLASS))


# ---------------------------------------------------------------- selections


@pytest.fixture(scope="module")
def vit_store(tmp_path_factory) -> Store:
    """12 images of a ViT-like layer: 1 CLS token (value 1000 + image) then 4 patches (value 10 * image + cell)."""
    return Store(write_vit_like_store(tmp_path_factory.mktemp("vit") / "s", 12))


def values(batches) -> list[int]:
    return sorted(torch.cat(list(batches))[:, 0].long().tolist())


def test_token_kinds_select_patches_or_cls(vit_store):
    patch = Selection(token_kinds(vit_store, "patch"))
    assert values(vit_store.batches(4, selection=patch, drop_last=False)) == sorted(10 * i + c for i in range(12) for c in range(4))
    cls = Selection(token_kinds(vit_store, "cls"))
    assert values(vit_store.batches(3, selection=cls)) == [1000 + i for i in range(12)]
    assert token_kinds(vit_store, None) == frozenset({0}), "a store of several kinds trains on its patches by default"
    assert token_kinds(vit_store, "all") is None
    with pytest.raises(VisaeError, match="holds no such tokens"):
        token_kinds(vit_store, "registers")


def test_per_kind_statistics_are_kept_and_used(vit_store):
    assert set(vit_store.meta.stats.by_kind) == {"0", "1"}
    patches = torch.tensor([[10.0 * i + c, float(i)] for i in range(12) for c in range(4)], dtype=torch.float64)
    view = StoreView(vit_store, Selection(frozenset({0})))
    assert torch.allclose(view.mean_D.double(), patches.mean(0), atol=1e-4)
    msq = float((patches - patches.mean(0)).pow(2).sum(1).mean())
    assert view.scale == pytest.approx((2 / msq) ** 0.5, rel=1e-6)
    assert len(view) == 48


def test_held_out_images_never_reach_training_and_are_read_back_exactly(vit_store):
    held = np.array([2, 7, 9])
    kinds = frozenset({0})
    train = StoreView(vit_store, Selection(kinds).without(held))
    test = StoreView(vit_store, Selection(kinds).only(held))
    assert len(train) == 36 and len(test) == 12
    got = values(train.batches(5, seed=1, drop_last=False))
    assert got == sorted(10 * i + c for i in range(12) if i not in held for c in range(4))
    assert values(test.chunks(chunk_tokens=7)) == sorted(10 * i + c for i in held for c in range(4))
    sample = train.sample(20, seed=0)[:, 1].long().tolist()
    assert len(sample) == 20 and not set(sample) & set(held.tolist())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 9), consumed=st.integers(0, 8), buffer=st.integers(1, 40), block=st.integers(1, 9))
def test_resume_with_a_selection_equals_the_uninterrupted_stream(vit_store, batch, consumed, buffer, block):
    sel = Selection(frozenset({0})).without(np.array([3, 4]))
    kw = dict(seed=2, epochs=2, buffer_tokens=buffer, block_tokens=block, selection=sel, prefetch=0)
    full = [b[:, 0].tolist() for b in vit_store.batches(batch, **kw)]
    k = min(consumed, len(full))
    rest = [b[:, 0].tolist() for b in vit_store.batches(batch, start=k * batch, **kw)]
    assert rest == full[k:]


def test_holdout_takes_a_share_capped_by_tokens(sorted_store):
    n_images = N_CLASSES * PER_CLASS // PER_IMAGE  # 600
    h = holdout_images(sorted_store, 0.05, 10**9, seed=0)
    assert len(h) == 30 and list(h) == sorted(h)
    assert len(set(sorted_store.images["label"][h])) > 1
    assert len(holdout_images(sorted_store, 0.05, 100, seed=0)) == 3, "capped near 100 tokens (3 images of 40)"
    assert len(holdout_images(sorted_store, 0.0, 100, seed=0)) == 0
    assert len(holdout_images(sorted_store, 0.9999, 10**9, seed=0)) == n_images - 1, "never every image"
    classes = np.asarray(sorted_store.images["image"])[holdout_images(sorted_store, 0.05, 10**9, seed=0)] // 30
    assert len(set(classes.tolist())) >= 10, "held-out images come from across the class-sorted store"
