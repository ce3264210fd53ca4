"""hf: a tiny Hugging Face dataset saved to disk — columns detected, splits, corrupt rows, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from visae.data.base import CorruptImage, open_dataset
from visae.data.loader import ImageLoader
from visae.data.sources.hf import parse_name
from visae.data.transforms import Preprocess
from visae.errors import VisaeError


def test_parse_name():
    assert parse_name("/tmp/ds:train") == ("/tmp/ds", "train")
    assert parse_name("/tmp/ds") == ("/tmp/ds", None)
    assert parse_name("user/cifar10:test") == ("user/cifar10", "test")
    assert parse_name("user/cifar10") == ("user/cifar10", None)


def test_missing_datasets_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(VisaeError, match=r"pip install 'visae\[datasets\]'"):
        open_dataset("hf:/tmp/anything")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    datasets = pytest.importorskip("datasets", reason="the 'datasets' extra is not installed")
    from PIL import Image

    feats = datasets.Features({"caption": datasets.Value("string"), "img": datasets.Image(),
                               "kind": datasets.ClassLabel(names=["cat", "dog"])})
    imgs = [Image.fromarray(np.full((6, 5, 3), 40 * k, np.uint8)) for k in range(4)]
    train = datasets.Dataset.from_dict({"caption": list("abcd"), "img": imgs, "kind": [0, 1, 1, 0]}, features=feats)
    broken = {"bytes": b"definitely not a png", "path": None}
    test = datasets.Dataset.from_dict({"caption": ["e", "f"], "img": [imgs[0], broken], "kind": [1, 0]}, features=feats)
    out = tmp_path_factory.mktemp("hf") / "pets"
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(out))
    return out


def test_columns_labels_and_images(saved: Path):
    ds = open_dataset(f"hf:{saved}")
    assert ds.split_names() == ["train", "test"]
    assert ds.class_names == ["cat", "dog"] and ds.image_column == "img" and ds.label_column == "kind"
    train = ds.split("train")
    assert train.labels.tolist() == [0, 1, 1, 0]
    s = train[2]
    assert s.image_HWC.shape == (6, 5, 3) and (s.image_HWC == 80).all()
    assert (s.label, s.image_id) == (1, "train/2")


def test_one_split_and_corrupt_rows(saved: Path):
    ds = open_dataset(f"hf:{saved}:test")
    assert ds.split_names() == ["test"] and ds.default_split("train") == "test"
    split = ds.split("test")
    with pytest.raises(CorruptImage, match="test/1: not an image file"):
        split[1]
    loader = ImageLoader(split, Preprocess(size=4), batch_size=2)
    (batch,) = list(loader)
    assert batch.ids == ["test/0"] and loader.skipped == [("test/1", "not an image file")]


def test_unknown_split_and_missing_dataset(saved: Path, tmp_path: Path, monkeypatch):
    with pytest.raises(VisaeError, match="has no split 'val'.*train, test"):
        open_dataset(f"hf:{saved}:val")
    import datasets

    # HF_DATASETS_OFFLINE=1 as read at import time: the cache is the only place looked at.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    with pytest.raises(VisaeError, match="could not load Hugging Face dataset 'nobody/nothing'"):
        open_dataset("hf:nobody/nothing")


def test_dataset_without_image_column(tmp_path: Path):
    datasets = pytest.importorskip("datasets", reason="the 'datasets' extra is not installed")
    datasets.Dataset.from_dict({"x": [1, 2]}).save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(VisaeError, match="no Image column"):
        open_dataset(f"hf:{tmp_path / 'plain'}")


def test_hub_names_are_read_from_the_local_cache_only(monkeypatch):
    """A name that is not cached must fail at once, not retry the network: load_dataset runs in offline mode."""
    datasets = pytest.importorskip("datasets", reason="the 'datasets' extra is not installed")
    from huggingface_hub import constants

    seen = []

    def load_dataset(name, *args, **kwargs):
        seen.append((name, datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE))
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(VisaeError, match="from a local path or the local cache"):
        open_dataset("hf:nobody/nothing")
    assert seen == [("nobody/nothing", True, True)]
    assert datasets.config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is False  # restored
