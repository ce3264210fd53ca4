"""fgvc-aircraft: a fake 12-image FGVC-Aircraft 2013b tree — labels, hierarchy, crops, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visae.data.base import open_dataset
from visae.errors import VisaeError

# variant -> (family, manufacturer); names with spaces, as in the real files.
TREE = {"707-320": ("Boeing 707", "Boeing"), "727-200": ("Boeing 727", "Boeing"),
        "A300B4": ("A300", "Airbus"), "Cessna 172": ("Cessna 172", "Cessna")}
VARIANTS = list(TREE)
SPLITS = {"train": [0, 1, 2, 3, 0], "val": [1, 2, 3, 0], "test": [3, 2, 1]}  # variant index per image
H, W = 50, 60


def write_fgvc(root: Path, boxes: bool = True) -> Path:
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    (data / "families.txt").write_text("\n".join(sorted({f for f, _ in TREE.values()})) + "\n")
    (data / "manufacturers.txt").write_text("\n".join(sorted({m for _, m in TREE.values()})) + "\n")
    lines = {(lv, s): [] for lv in ("variant", "family", "manufacturer") for s in [*SPLITS, "trainval"]}
    box_lines, n = [], 0
    for split, variants in SPLITS.items():
        for v in variants:
            image_id = f"{1000000 + n:07d}"
            n += 1
            pixels = np.full((H, W, 3), 100 + n, np.uint8)
            pixels[-20:] = 255  # the copyright banner
            Image.fromarray(pixels).save(data / "images" / f"{image_id}.jpg", quality=95)
            name = VARIANTS[v]
            for lv, value in (("variant", name), ("family", TREE[name][0]), ("manufacturer", TREE[name][1])):
                lines[(lv, split)].append(f"{image_id} {value}")
                if split != "test":
                    lines[(lv, "trainval")].append(f"{image_id} {value}")
            box_lines.append(f"{image_id} 11 6 40 25")
    for (lv, split), rows in lines.items():
        (data / f"images_{lv}_{split}.txt").write_text("\n".join(rows) + "\n")
    if boxes:
        (data / "images_box.txt").write_text("\n".join(box_lines) + "\n")
    assert n == 12
    return root / "fgvc-aircraft-2013b"


@pytest.fixture
def fgvc(tmp_path: Path) -> Path:
    return write_fgvc(tmp_path)


def test_splits_labels_and_ids(fgvc: Path):
    ds = open_dataset(f"fgvc-aircraft:{fgvc}")
    assert ds.split_names() == ["train", "val", "trainval", "test"]
    assert ds.class_names == VARIANTS
    train = ds.split("train")
    assert len(train) == 5 and train.labels.tolist() == SPLITS["train"]
    assert train.image_id(0) == "1000000"
    assert len(ds.split("trainval")) == 9 and ds.split("test").labels.tolist() == [3, 2, 1]


def test_hierarchy_is_derived_from_the_label_files(fgvc: Path):
    h = open_dataset(f"fgvc-aircraft:{fgvc}").hierarchy
    assert h.levels == ["variant", "family", "manufacturer"]
    for variant, (family, maker) in TREE.items():
        assert h.ancestor(variant, "family") == family
        assert h.ancestor(variant, "manufacturer") == maker


def test_banner_is_cropped_by_default(fgvc: Path):
    s = open_dataset(f"fgvc-aircraft:{fgvc}").split("val")[0]
    assert s.image_HWC.shape == (H - 20, W, 3)
    assert s.image_HWC.max() < 200  # no white banner row left
    assert s.label == 1 and s.image_id == "1000005"


def test_box_and_none_crops(fgvc: Path):
    boxed = open_dataset(f"fgvc-aircraft:{fgvc}?crop=box").split("test")[0]
    assert boxed.image_HWC.shape == (25 - 6 + 1, 40 - 11 + 1, 3)  # 1-based inclusive corners
    whole = open_dataset(f"fgvc-aircraft:{fgvc}?crop=none").split("test")[0]
    assert whole.image_HWC.shape == (H, W, 3) and whole.image_HWC[-1].min() > 240


def test_accepts_the_data_dir_and_the_parent(fgvc: Path):
    for path in (fgvc / "data", fgvc.parent):
        assert len(open_dataset(f"fgvc-aircraft:{path}").split("train")) == 5


def test_missing_directory_suggests_the_download(tmp_path: Path):
    with pytest.raises(VisaeError, match="does not exist") as e:
        open_dataset(f"fgvc-aircraft:{tmp_path / 'fgvc'}")
    assert "python -m visae.data.sources.fgvc_download" in str(e.value)


def test_bad_options_are_refused(fgvc: Path):
    with pytest.raises(VisaeError, match="did you mean 'crop'"):
        open_dataset(f"fgvc-aircraft:{fgvc}?corp=box")
    with pytest.raises(VisaeError, match="use one of: banner, box, none"):
        open_dataset(f"fgvc-aircraft:{fgvc}?crop=square")


def test_crop_box_without_box_file_is_refused(tmp_path: Path):
    root = write_fgvc(tmp_path, boxes=False)
    with pytest.raises(VisaeError, match="images_box.txt is missing"):
        open_dataset(f"fgvc-aircraft:{root}?crop=box")


def test_inconsistent_hierarchy_is_refused(fgvc: Path):
    f = fgvc / "data" / "images_family_test.txt"
    first, *rest = f.read_text().splitlines()
    f.write_text("\n".join([first.split(" ")[0] + " Boeing 747", *rest]) + "\n")
    with pytest.raises(VisaeError, match="two parents"):
        open_dataset(f"fgvc-aircraft:{fgvc}")


def test_describe(fgvc: Path):
    from visae.data.describe import describe

    d = describe(f"fgvc-aircraft:{fgvc}")
    assert {k: v["size"] for k, v in d["splits"].items()} == {"train": 5, "val": 4, "trainval": 9, "test": 3}
    assert d["splits"]["trainval"]["class_counts"] == [3, 2, 2, 2]
    assert d["hierarchy"]["sizes"] == {"variant": 4, "family": 4, "manufacturer": 3}
    assert d["part_names"] is None and "image_shape" not in d["splits"]["train"]
