"""folder: ImageFolder trees — labels, ids, split layout, ignored files, corrupt images, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visae.data.base import CorruptImage, open_dataset
from visae.data.loader import ImageLoader
from visae.data.transforms import Preprocess
from visae.errors import VisaeError


def _image(path: Path, fmt: str, value: int, size=(12, 10), mode="RGB") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """cat: 2 good images; dog: 2 good, a corrupt .jpg, a truncated .png, a .txt, and a nested folder."""
    root = tmp_path / "pets"
    _image(root / "cat" / "a.png", "PNG", 10)
    _image(root / "cat" / "b.jpg", "JPEG", 20, mode="L")
    _image(root / "dog" / "c.png", "PNG", 30, mode="RGBA")
    _image(root / "dog" / "sub" / "d.jpg", "JPEG", 40)
    (root / "dog" / "bad.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    (root / "dog" / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\0")
    return root


def test_flat_tree_labels_ids_and_ignored_files(tree: Path, capsys):
    ds = open_dataset(f"folder:{tree}")
    assert ds.class_names == ["cat", "dog"]
    assert ds.split_names() == ["all"]
    assert ds.ignored == ["dog/notes.txt"]
    assert capsys.readouterr().err.count("ignored 1 non-image file") == 1
    split = ds.split("all")
    ids = [split.image_id(i) for i in range(len(split))]
    assert ids == ["cat/a.png", "cat/b.jpg", "dog/bad.jpg", "dog/c.png", "dog/trunc.png", "dog/sub/d.jpg"]
    assert split.labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert ds.default_split("train") == "all"


def test_samples_decode_to_rgb_uint8(tree: Path):
    split = open_dataset(f"folder:{tree}").split("all")
    for i, value in [(0, 10), (1, 20), (3, 30)]:  # RGB png, greyscale jpeg, RGBA png
        s = split[i]
        assert s.image_HWC.shape == (10, 12, 3) and s.image_HWC.dtype == np.uint8
        assert abs(int(s.image_HWC.mean()) - value) <= 2
        assert s.parts_HW is None


def test_corrupt_and_truncated_images_raise_corrupt_image(tree: Path):
    split = open_dataset(f"folder:{tree}").split("all")
    with pytest.raises(CorruptImage) as bad:
        split[2]
    assert (bad.value.image_id, bad.value.reason) == ("dog/bad.jpg", "not an image file")
    with pytest.raises(CorruptImage) as trunc:
        split[4]
    assert trunc.value.image_id == "dog/trunc.png" and trunc.value.reason == "truncated file"


def test_loader_skips_counts_and_reports_unreadable_images(tree: Path, capsys):
    split = open_dataset(f"folder:{tree}").split("all")
    capsys.readouterr()
    loader = ImageLoader(split, Preprocess(size=8), batch_size=2)
    batches = list(loader)
    ids = [i for b in batches for i in b.ids]
    assert ids == ["cat/a.png", "cat/b.jpg", "dog/c.png", "dog/sub/d.jpg"]
    assert [len(b) for b in batches] == [2, 1, 1]
    assert batches[0].pixels_BCHW.shape == (2, 3, 8, 8) and batches[0].labels_B.tolist() == [0, 0]
    assert loader.skipped == [("dog/bad.jpg", "not an image file"), ("dog/trunc.png", "truncated file")]
    err = capsys.readouterr().err
    assert err.count("skipped 2 unreadable images (first: dog/bad.jpg: not an image file)") == 1


def test_batch_of_only_corrupt_images_is_not_yielded(tree: Path):
    split = open_dataset(f"folder:{tree}").split("all")
    loader = ImageLoader(split, Preprocess(size=8), batch_size=2, indices=[2, 4, 0])
    batches = list(loader)
    assert [b.ids for b in batches] == [["cat/a.png"]]
    assert len(loader) == 2 and len(loader.skipped) == 2


def test_split_layout_shares_one_label_set(tmp_path: Path):
    root = tmp_path / "d"
    _image(root / "train" / "cat" / "1.png", "PNG", 1)
    _image(root / "train" / "dog" / "2.png", "PNG", 2)
    _image(root / "val" / "dog" / "3.png", "PNG", 3)
    _image(root / "val" / "eel" / "4.png", "PNG", 4)
    ds = open_dataset(f"folder:{root}")
    assert ds.split_names() == ["train", "val"]
    assert ds.class_names == ["cat", "dog", "eel"]
    val = ds.split("val")
    assert [val.image_id(i) for i in range(2)] == ["val/dog/3.png", "val/eel/4.png"]
    assert val.labels.tolist() == [1, 2]
    assert ds.default_split("val") == "val"
    with pytest.raises(VisaeError, match="no split 'test'"):
        ds.split("test")


def test_empty_class_directory_is_an_error(tree: Path):
    (tree / "eel").mkdir()
    (tree / "eel" / "readme.md").write_text("no images here")
    with pytest.raises(VisaeError, match=r"class directory .*eel holds no images") as e:
        open_dataset(f"folder:{tree}")
    assert "add images" in str(e.value)


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_bad_roots_are_clear_errors(tmp_path: Path, make: str):
    root = tmp_path / "x"
    if make == "file":
        root.write_text("x")
    elif make == "empty":
        root.mkdir()
    expected = {"missing": "does not exist", "file": "is a file", "empty": "no class directories"}[make]
    with pytest.raises(VisaeError, match=expected):
        open_dataset(f"folder:{root}")


def test_spec_errors():
    with pytest.raises(VisaeError, match="names no path"):
        open_dataset("folder:")
    with pytest.raises(VisaeError, match="did you mean 'folder'"):
        open_dataset("foldr:/tmp/x")
    with pytest.raises(VisaeError, match="has no scheme"):
        open_dataset("/tmp/some/dir")


def test_describe_counts_ignored_files_and_only_readable_images(tree: Path):
    from visae.data.describe import describe

    d = describe(f"folder:{tree}")
    unreadable = {"count": 2, "first": ["dog/bad.jpg: not an image file", "dog/trunc.png: truncated file"]}
    assert d["class_names"] == ["cat", "dog"]
    assert d["splits"] == {"all": {"size": 4, "labelled": 4, "class_counts": [2, 2], "unreadable": unreadable}}
    assert d["hierarchy"] is None and d["ignored_files"] == {"count": 1, "first": ["dog/notes.txt"]}
