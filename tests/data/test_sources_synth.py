"""synth-aircraft: reading the generator's format (memory-mapped), labels, parts, hierarchy, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from visae.artifact import write_marker
from visae.data.base import Hierarchy, open_dataset
from visae.data.loader import ImageLoader
from visae.data.transforms import Preprocess
from visae.errors import VisaeError

CLASSES = ["A1", "A2", "B1"]
HIER = Hierarchy(
    levels=["variant", "family", "manufacturer"],
    parents={"variant": {"A1": "A", "A2": "A", "B1": "B", "Z9": "Z"}, "family": {"A": "Acme", "B": "Acme", "Z": "Zed"}},
)
PARTS = ["background", "fuselage", "wing", "tail"]


def write_synth(root: Path, sizes=None, size: int = 16, seed: int = 0) -> Path:
    """The exact on-disk layout of the synth-aircraft generator, with recognisable contents:
    image i of a split is filled with value i, its part map is (i + row) % 4."""
    sizes = sizes or {"train": 7, "val": 3, "ood": 2}
    root.mkdir(parents=True)
    write_marker(root, "synth-aircraft")
    info = {"format_version": 1, "seed": seed, "size": size, "splits": sizes, "class_names": CLASSES,
            "ood_variants": ["Z9"], "part_names": PARTS}
    (root / "info.json").write_text(json.dumps(info))
    (root / "hierarchy.json").write_text(json.dumps(HIER.to_json()))
    for split, n in sizes.items():
        d = root / split
        d.mkdir()
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 3))
        rows_HW = np.arange(size, dtype=np.uint8)[None, :, None]
        parts = ((np.arange(n, dtype=np.uint8)[:, None, None] + rows_HW) % 4) * np.ones((1, 1, size), np.uint8)
        np.save(d / "images.npy", np.ascontiguousarray(images))
        np.save(d / "parts.npy", parts.astype(np.uint8))
        with open(d / "manifest.jsonl", "w") as f:
            for i in range(n):
                variant = "Z9" if split == "ood" else CLASSES[i % 3]
                label = -1 if split == "ood" else i % 3
                row = {"index": i, "id": f"{split}/{i:05d}", "variant": variant,
                       "family": HIER.ancestor(variant, "family"), "manufacturer": HIER.ancestor(variant, "manufacturer"),
                       "label": label, "yaw": 0.1 * i}
                f.write(json.dumps(row) + "\n")
    return root


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    return write_synth(tmp_path / "synth")


def test_splits_labels_ids_and_metadata(synth: Path):
    ds = open_dataset(f"synth-aircraft:{synth}")
    assert ds.split_names() == ["train", "val", "ood"]
    assert ds.class_names == CLASSES and ds.part_names == PARTS
    assert ds.hierarchy.ancestor("B1", "manufacturer") == "Acme"
    train, ood = ds.split("train"), ds.split("ood")
    assert len(train) == 7 and train.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert ood.labels.tolist() == [-1, -1]
    assert train.image_id(3) == "train/00003"
    assert train.rows[4]["yaw"] == pytest.approx(0.4)
    assert isinstance(train.images_NHWC, np.memmap) and isinstance(train.parts_NHW, np.memmap)


def test_sample_has_image_and_parts(synth: Path):
    s = open_dataset(f"synth-aircraft:{synth}").split("val")[2]
    assert s.image_HWC.shape == (16, 16, 3) and (s.image_HWC == 2).all()
    assert s.parts_HW.shape == (16, 16) and s.parts_HW[:, 0].tolist() == [(2 + r) % 4 for r in range(16)]
    assert s.label == 2 and s.image_id == "val/00002"


def test_loader_fast_path_matches_preprocess_and_fits_parts(synth: Path):
    split = open_dataset(f"synth-aircraft:{synth}").split("train")
    pre = Preprocess(size=32, resample="bilinear")
    batches = list(ImageLoader(split, pre, batch_size=4))
    assert [len(b) for b in batches] == [4, 3]
    b = batches[1]
    assert b.indices_B.tolist() == [4, 5, 6] and b.ids == ["train/00004", "train/00005", "train/00006"]
    assert b.labels_B.dtype == torch.int64 and b.labels_B.tolist() == [1, 2, 0]
    expected = pre.batch(np.array(split.images_NHWC[4:7]))
    assert torch.equal(b.pixels_BCHW, expected)
    # 16 -> 32 nearest: every source pixel becomes a 2x2 block, labels never blend.
    src = torch.from_numpy(np.array(split.parts_NHW[4:7]))
    assert b.parts_BHW.dtype == torch.uint8 and b.parts_BHW.shape == (3, 32, 32)
    assert torch.equal(b.parts_BHW, src.repeat_interleave(2, 1).repeat_interleave(2, 2))


def test_parts_follow_a_centre_crop(synth: Path):
    split = open_dataset(f"synth-aircraft:{synth}").split("val")
    pre = Preprocess(size=8, crop_pct=0.5)  # resize 16 -> 16 (no-op), crop the central 8x8
    b = next(iter(ImageLoader(split, pre, batch_size=3)))
    assert torch.equal(b.parts_BHW, torch.from_numpy(np.array(split.parts_NHW[:, 4:12, 4:12])))


def test_wrong_format_version_is_refused(synth: Path):
    info = json.loads((synth / "info.json").read_text())
    (synth / "info.json").write_text(json.dumps({**info, "format_version": 2}))
    with pytest.raises(VisaeError, match="format 2"):
        open_dataset(f"synth-aircraft:{synth}")


def test_inconsistent_split_is_refused(synth: Path):
    np.save(synth / "val" / "parts.npy", np.zeros((3, 8, 8), np.uint8))
    ds = open_dataset(f"synth-aircraft:{synth}")
    with pytest.raises(VisaeError, match=r"parts.npy is uint8\[3, 8, 8\]"):
        ds.split("val")


def test_not_a_synth_dataset(tmp_path: Path):
    with pytest.raises(VisaeError, match="does not exist"):
        open_dataset(f"synth-aircraft:{tmp_path / 'nope'}")
    (tmp_path / "other").mkdir()
    write_marker(tmp_path / "other", "store")
    with pytest.raises(VisaeError, match="not a synth-aircraft dataset \\(a visae store\\)"):
        open_dataset(f"synth-aircraft:{tmp_path / 'other'}")


def test_incomplete_dataset_is_refused(synth: Path):
    write_marker(synth, "synth-aircraft", format_version=1, complete=False)
    with pytest.raises(VisaeError, match="is incomplete"):
        open_dataset(f"synth-aircraft:{synth}")
    write_marker(synth, "synth-aircraft", format_version=1, complete=True)
    assert len(open_dataset(f"synth-aircraft:{synth}").split("val")) == 3


def test_missing_manifest_is_clear(synth: Path):
    (synth / "ood" / "manifest.jsonl").unlink()
    with pytest.raises(VisaeError, match="manifest.jsonl is missing"):
        open_dataset(f"synth-aircraft:{synth}").split("ood")


def test_describe_reports_splits_hierarchy_and_parts(synth: Path):
    from visae.data.describe import describe

    d = describe(f"synth-aircraft:{synth}")
    assert d["spec"] == f"synth-aircraft:{synth}" and d["num_classes"] == 3
    assert {k: v["size"] for k, v in d["splits"].items()} == {"train": 7, "val": 3, "ood": 2}
    assert d["splits"]["train"]["class_counts"] == [3, 2, 2] and d["splits"]["ood"]["labelled"] == 0
    assert d["splits"]["val"]["image_shape"] == [16, 16, 3]
    assert d["hierarchy"] == {"levels": ["variant", "family", "manufacturer"],
                              "sizes": {"variant": 4, "family": 3, "manufacturer": 2}}
    assert d["part_names"] == PARTS
    json.dumps(d)  # JSON-able as it is
