"""Writing then reading a store gives back exactly what was written, with its index and stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from store_helpers import write_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visae.errors import VisaeError
from visae.store import Store


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_images=st.integers(1, 9),
    per_image=st.integers(1, 7),
    d=st.integers(1, 6),
    shard_tokens=st.integers(3, 20),
    seed=st.integers(0, 2**16),
)
def test_fp32_roundtrip_is_exact(tmp_path_factory, n_images, per_image, d, shard_tokens, seed):
    g = torch.Generator().manual_seed(seed)
    acts = [torch.randn(per_image, d, generator=g) * 10 for _ in range(n_images)]
    path = tmp_path_factory.mktemp("s")
    write_store(path, acts, shard_tokens=shard_tokens)
    store = Store(path)
    x_TD = torch.cat(acts)
    assert len(store) == len(x_TD) and store.d == d and store.n_images == n_images
    assert torch.equal(store.get(np.arange(len(store))), x_TD)
    perm = np.random.default_rng(seed).permutation(len(store))
    assert torch.equal(store[perm], x_TD[perm])
    assert torch.equal(store[len(store) - 1], x_TD[-1])
    assert np.array_equal(store.index["image"], np.repeat(np.arange(n_images), per_image))
    assert np.array_equal(store.images["token_start"], np.arange(n_images) * per_image)
    assert store.images["id"] == [f"img{i}" for i in range(n_images)]
    x64 = x_TD.double()
    assert np.allclose(store.mean_D.numpy(), x64.mean(0).numpy(), rtol=1e-6, atol=1e-6)
    centred = ((x64 - x64.mean(0)) ** 2).sum(1).mean().item()
    assert store.mean_sq_norm == pytest.approx(centred, rel=1e-6, abs=1e-9)


def test_bf16_bits_roundtrip(tmp_path):
    # every finite bf16 bit pattern class: normals, subnormals, signed zeros, extremes
    bits = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x3F80, 0xBF80, 0x7F7F, 0xFF7F, 0x4049, 0x1234], np.uint16)
    acts_TD = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).reshape(5, 2)
    write_store(tmp_path / "s", [acts_TD[:3], acts_TD[3:]], shard_tokens=4, dtype="bf16")
    store = Store(tmp_path / "s")
    raw = np.concatenate([np.load(tmp_path / "s" / f"shard_{k:06d}.npy") for k in range(2)])
    assert raw.dtype == np.uint16 and np.array_equal(raw.reshape(-1), bits)
    got = store.get(np.arange(5), dtype=torch.bfloat16)
    assert np.array_equal(got.view(torch.int16).numpy().view(np.uint16).reshape(-1), bits)
    assert torch.equal(store.get(np.arange(5)), acts_TD.float())


def test_fp16_and_bf16_round_to_nearest(tmp_path):
    x_TD = torch.randn(8, 3) * 100
    for dtype, tdtype in [("fp16", torch.float16), ("bf16", torch.bfloat16)]:
        write_store(tmp_path / dtype, [x_TD], shard_tokens=5, dtype=dtype)
        assert torch.equal(Store(tmp_path / dtype).get(slice(None)), x_TD.to(tdtype).float())


def test_scale_maps_centred_tokens_to_mean_squared_norm_d(small_store):
    path, x_TD = small_store
    store = Store(path)
    centred_TD = (store.get(np.arange(len(store))) - store.mean_D) * store.scale
    assert centred_TD.pow(2).sum(1).mean().item() == pytest.approx(store.d, rel=1e-5)


def test_iter_images_yields_whole_images_in_order(small_store):
    path, x_TD = small_store
    seen = []
    for tokens_TD, image_T, y_T, x_T in Store(path).iter_images(batch_images=4):
        assert np.all(np.bincount(image_T - image_T.min()) == 6)
        assert np.array_equal(y_T[:6], [0, 0, 0, 0, 1, 1]) and np.array_equal(x_T[:6], [0, 1, 2, 3, 0, 1])
        seen.append(tokens_TD)
    assert [len(s) for s in seen] == [24, 24, 24, 6]
    assert torch.equal(torch.cat(seen), x_TD)


def test_out_of_range_access_is_an_index_error(small_store):
    store = Store(small_store[0])
    with pytest.raises(IndexError):
        store.get([0, len(store)])
    assert torch.equal(store[-1], small_store[1][-1])


def test_unknown_format_version_is_refused(small_store):
    path = small_store[0]
    meta = json.loads((path / "metadata.json").read_text())
    meta["format_version"] = 99
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(VisaeError, match="newer visae") as e:
        Store(path)
    assert "upgrade" in str(e.value)


def test_incomplete_store_needs_allow_partial(tmp_path):
    acts = [torch.randn(6, 5) for _ in range(10)]
    write_store(tmp_path / "s", acts, shard_tokens=16, stop_after=7)  # 42 tokens: 2 shards committed, 10 buffered
    with pytest.raises(VisaeError, match="incomplete"):
        Store(tmp_path / "s")
    store = Store(tmp_path / "s", allow_partial=True)
    assert len(store) == 32 and torch.equal(store.get(np.arange(32)), torch.cat(acts)[:32])
    # image 5 straddles the committed end: iter_images only yields the 5 whole images
    assert sum(len(b.images) for b in store.iter_images(2)) == 5


def test_not_a_store_errors_say_what_to_do(tmp_path):
    with pytest.raises(VisaeError, match="no such directory"):
        Store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisaeError, match="not an activation store"):
        Store(tmp_path / "empty")
