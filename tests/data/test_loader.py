"""ImageLoader: batch shapes, coverage, shuffle determinism, skips, augment, both paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.data.base import ArraySplit, CorruptImage, Sample, Split
from visae.data.loader import ImageLoader, fit_parts
from visae.data.transforms import Preprocess
from visae.errors import VisaeError

PRE = Preprocess(size=8, resample="bilinear")


class Arrays(ArraySplit):
    """n images of 8x8, image i filled with value i, parts = i % 3 everywhere."""

    name = "arr"

    def __init__(self, n: int, with_parts: bool = True):
        self.images_NHWC = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 8, 8, 3)).copy()
        self.with_parts = with_parts
        self._labels = np.arange(n, dtype=np.int64) % 4

    def __len__(self) -> int:
        return len(self._labels)

    def images(self, indices_B):
        return self.images_NHWC[indices_B]

    def parts(self, indices_B):
        return (self.images_NHWC[indices_B, :, :, 0] % 3).astype(np.uint8) if self.with_parts else None

    def image_id(self, i: int) -> str:
        return f"img{i}"

    @property
    def labels(self):
        return self._labels


class Files(Split):
    """A decoded-one-by-one split whose images in ``corrupt`` fail to decode."""

    name = "files"

    def __init__(self, n: int, corrupt: set[int] = frozenset()):
        self.n, self.corrupt = n, corrupt

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if i in self.corrupt:
            raise CorruptImage(self.image_id(i), "truncated file")
        return Sample(np.full((6 + i % 3, 10, 3), i, np.uint8), self.label(i), self.image_id(i))

    def image_id(self, i: int) -> str:
        return f"dir/{i}.jpg"

    def label(self, i: int) -> int:
        return i % 5


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), bs=st.integers(1, 8), shuffle=st.booleans(), drop_last=st.booleans(), seed=st.integers(0, 5))
def test_batches_cover_each_index_once(n, bs, shuffle, drop_last, seed):
    loader = ImageLoader(Arrays(n, with_parts=False), PRE, bs, shuffle=shuffle, seed=seed, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader)
    seen = [i for b in batches for i in b.indices_B.tolist()]
    assert len(seen) == len(set(seen)) == (n // bs * bs if drop_last else n)
    assert all(len(b) == bs for b in batches[:-1] if batches)
    for b in batches:
        assert b.indices_B.tolist() == sorted(b.indices_B.tolist())
        assert b.labels_B.tolist() == [i % 4 for i in b.indices_B.tolist()]
        assert b.ids == [f"img{i}" for i in b.indices_B.tolist()]
    if not shuffle:
        assert seen == list(range(len(seen)))


def _order(loader) -> list[int]:
    return [i for b in loader for i in b.indices_B.tolist()]


def test_shuffle_is_determined_by_seed_and_epoch():
    def make(seed):
        return ImageLoader(Arrays(50), PRE, 7, shuffle=True, seed=seed)

    a, b, c = make(1), make(1), make(2)
    a0, a1 = [bt.indices_B.tolist() for bt in a], [bt.indices_B.tolist() for bt in a]
    assert a0 == [bt.indices_B.tolist() for bt in b]  # same seed, same epoch 0
    assert a0 != a1  # a new permutation every epoch
    assert a0 != [bt.indices_B.tolist() for bt in c]
    assert a0 != [bt.indices_B.tolist() for bt in ImageLoader(Arrays(50), PRE, 7)]
    b.epoch = 0
    assert _order(b) == sum(a0, [])  # resuming at an epoch replays it


def test_fast_path_pixels_and_parts():
    split = Arrays(10)
    pre = Preprocess(size=16, resample="bilinear", mean=(0, 0, 0), std=(1, 1, 1))
    b = next(iter(ImageLoader(split, pre, 4, indices=[9, 2, 5])))
    assert b.indices_B.tolist() == [2, 5, 9]
    assert b.pixels_BCHW.shape == (3, 3, 16, 16) and b.pixels_BCHW.dtype == torch.float32
    assert torch.allclose(b.pixels_BCHW[:, 0, 0, 0], torch.tensor([2, 5, 9]) / 255.0)
    assert b.parts_BHW.shape == (3, 16, 16) and b.parts_BHW.dtype == torch.uint8
    assert b.parts_BHW[:, 5, 5].tolist() == [2, 2, 0]


def test_augment_applies_and_drops_parts():
    b = next(iter(ImageLoader(Arrays(4), PRE, 4, augment=lambda x_BCHW: x_BCHW.flip(-1) * 0 + 7)))
    assert (b.pixels_BCHW == 7).all() and b.parts_BHW is None


def test_decoded_path_resizes_mixed_sizes_and_skips(capsys):
    split = Files(9, corrupt={1, 6, 7, 8})
    loader = ImageLoader(split, PRE, 3)
    batches = list(loader)
    assert len(loader) == 3
    assert [b.indices_B.tolist() for b in batches] == [[0, 2], [3, 4, 5]]  # batch 6,7,8 all corrupt: dropped
    assert batches[1].pixels_BCHW.shape == (3, 3, 8, 8) and batches[1].labels_B.tolist() == [3, 4, 0]
    assert batches[1].parts_BHW is None
    assert torch.allclose(batches[0].pixels_BCHW, torch.stack([PRE(split[0].image_HWC), PRE(split[2].image_HWC)]))
    err = capsys.readouterr().err
    assert err.count("warning: skipped 4 unreadable images (first: dir/1.jpg: truncated file)") == 1
    list(loader)  # a second epoch reports its own skips and keeps the tally
    assert len(loader.skipped) == 8 and capsys.readouterr().err.count("skipped 4 unreadable") == 1


def test_clean_epoch_warns_nothing(capsys):
    list(ImageLoader(Files(4), PRE, 2))
    assert "skipped" not in capsys.readouterr().err


def test_worker_processes_give_the_same_batches():
    split = Files(10, corrupt={4})
    serial = list(ImageLoader(split, PRE, 4, shuffle=True, seed=5))
    loader = ImageLoader(split, PRE, 4, shuffle=True, seed=5, num_workers=1)
    parallel = list(loader)
    assert [b.ids for b in serial] == [b.ids for b in parallel]
    assert all(torch.equal(a.pixels_BCHW, b.pixels_BCHW) for a, b in zip(serial, parallel, strict=True))
    assert loader.skipped == [("dir/4.jpg", "truncated file")]


def test_fit_parts_matches_preprocess_geometry():
    parts_BHW = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)  # 3x4 image
    pre = Preprocess(size=6)  # shorter side 3 -> 6, so 6x8, centre crop columns 1..6
    out = fit_parts(parts_BHW, pre)
    expected = parts_BHW.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :, 1:7]
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"batch_size": 0}, "batch size"), ({"indices": [0, 12]}, "out of range"), ({"num_workers": -1}, "num_workers")],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    args = {"batch_size": 2, **kwargs}
    with pytest.raises(VisaeError, match=match):
        ImageLoader(Arrays(5), PRE, **args)
