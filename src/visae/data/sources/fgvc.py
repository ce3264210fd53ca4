"""``fgvc-aircraft:PATH[?crop=banner|box|none]`` — FGVC-Aircraft (fgvc-aircraft-2013b), read as shipped.

PATH is the archive root (holding ``data/``) or its ``data/`` directory, which holds
``images/<id>.jpg``, ``variants.txt``, and ``images_{variant,family,manufacturer}_{split}.txt``
with lines ``<image_id> <name with spaces>`` for the splits train, val, trainval, test.

Labels are variants (100 classes, in ``variants.txt`` order). The 3-level hierarchy
variant -> family -> manufacturer is derived from the per-image label files. Every official
image has a 20-pixel copyright banner along its bottom: ``crop=banner`` (the default, as is
common practice) cuts it off, ``crop=box`` crops to the aircraft's box from
``images_box.txt`` (1-based, inclusive corners), ``crop=none`` keeps the whole image.
Downloading is separate and explicit: ``visae.data.sources.fgvc_download``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visae.data.base import SOURCES, Dataset, Hierarchy, Sample, Split, read_only
from visae.data.sources.decode import decode_image
from visae.data.sources.options import require_path, split_options
from visae.errors import VisaeError

SCHEME = "fgvc-aircraft"
SPLITS = ("train", "val", "trainval", "test")
LEVELS = ["variant", "family", "manufacturer"]
BANNER_PX = 20
"""Height of the copyright banner at the bottom of every official image."""
CROPS = ("banner", "box", "none")


class FGVCSplit(Split):
    def __init__(self, name: str, data_dir: Path, ids: list[str], labels: np.ndarray, crop: str, boxes: dict):
        self.name = name
        self.data_dir = data_dir
        self.ids = ids
        self._labels = read_only(labels)
        self.crop = crop
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        image_id = self.ids[i]
        image = decode_image(self.data_dir / "images" / f"{image_id}.jpg", image_id, self._cropper(image_id))
        return Sample(image, int(self._labels[i]), image_id)

    def _cropper(self, image_id: str):
        if self.crop == "banner":
            return lambda im: im.crop((0, 0, im.width, max(1, im.height - BANNER_PX)))
        if self.crop == "box":
            x0, y0, x1, y1 = self.boxes[image_id]
            return lambda im: im.crop((x0 - 1, y0 - 1, x1, y1))
        return None

    def image_id(self, i: int) -> str:
        return self.ids[i]

    def label(self, i: int) -> int:
        return int(self._labels[i])

    @property
    def labels(self) -> np.ndarray:
        return self._labels  # read-only: a view, never a copy per call


class FGVCAircraft(Dataset):
    def __init__(self, path: str | Path, crop: str = "banner", spec: str | None = None):
        if crop not in CROPS:
            raise VisaeError(f"bad crop '{crop}' for FGVC-Aircraft", f"use one of: {', '.join(CROPS)}")
        self.data_dir = find_data_dir(Path(path).expanduser())
        self.spec = spec or f"{SCHEME}:{path}"
        self.crop = crop
        self.class_names = _read_names(self.data_dir / "variants.txt")
        self._split_files = {s: self.data_dir / f"images_variant_{s}.txt" for s in SPLITS}
        self._split_files = {s: f for s, f in self._split_files.items() if f.is_file()}
        if not self._split_files:
            raise VisaeError(f"{self.data_dir} has no images_variant_<split>.txt", "is this an fgvc-aircraft-2013b tree?")
        self.hierarchy = self._derive_hierarchy()
        self._boxes = _read_boxes(self.data_dir / "images_box.txt") if crop == "box" else {}
        self._cache: dict[str, FGVCSplit] = {}

    def split_names(self) -> list[str]:
        return list(self._split_files)

    def _open_split(self, name: str) -> Split:
        if name not in self._cache:
            self._cache[name] = self._read_split(name)
        return self._cache[name]

    def _read_split(self, name: str) -> FGVCSplit:
        rows = _read_labelled(self._split_files[name])
        index = {c: k for k, c in enumerate(self.class_names)}
        unknown = sorted({v for _, v in rows if v not in index})
        if unknown:
            raise VisaeError(f"{self._split_files[name]} names variants not in variants.txt: {unknown[:3]}", "the tree is inconsistent; re-extract it")
        ids = [i for i, _ in rows]
        if self.crop == "box":
            missing = [i for i in ids if i not in self._boxes]
            if missing:
                raise VisaeError(f"images_box.txt has no box for {len(missing)} images (first: {missing[0]})", "use crop=banner")
        labels = np.array([index[v] for _, v in rows], dtype=np.int64)
        return FGVCSplit(name, self.data_dir, ids, labels, self.crop, self._boxes)

    def _derive_hierarchy(self) -> Hierarchy | None:
        """variant -> family -> manufacturer, from the per-image label files of every split."""
        parents: dict[str, dict[str, str]] = {"variant": {}, "family": {}}
        found = False
        for split in self._split_files:
            files = [self.data_dir / f"images_{lv}_{split}.txt" for lv in LEVELS]
            if not all(f.is_file() for f in files):
                continue
            found = True
            per_level = [dict(_read_labelled(f)) for f in files]
            for image_id, variant in per_level[0].items():
                family, maker = per_level[1].get(image_id), per_level[2].get(image_id)
                if family is None or maker is None:
                    raise VisaeError(f"image {image_id} has no family or manufacturer in the {split} files", "re-extract the tree")
                _set_parent(parents["variant"], variant, family)
                _set_parent(parents["family"], family, maker)
        return Hierarchy(levels=list(LEVELS), parents=parents) if found else None


def find_data_dir(path: Path) -> Path:
    """The ``data/`` directory of an FGVC-Aircraft tree given its root or ``data/`` itself."""
    for d in (path / "data", path, path / "fgvc-aircraft-2013b" / "data"):
        if (d / "variants.txt").is_file() and (d / "images").is_dir():
            return d
    what = "does not exist" if not path.exists() else "holds no data/variants.txt and data/images/"
    raise VisaeError(
        f"FGVC-Aircraft directory {path} {what}",
        "point at the extracted fgvc-aircraft-2013b folder, or download it (needs internet): "
        "python -m visae.data.sources.fgvc_download DEST",
    )


def _set_parent(table: dict[str, str], child: str, parent: str) -> None:
    old = table.setdefault(child, parent)
    if old != parent:
        raise VisaeError(f"'{child}' has two parents, '{old}' and '{parent}'", "the label files are inconsistent")


def _read_names(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise VisaeError(f"{path} is missing", "is this an fgvc-aircraft-2013b tree?") from None


def _read_labelled(path: Path) -> list[tuple[str, str]]:
    """Lines ``<image_id> <name with spaces>`` -> [(id, name)]."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image_id, sep, name = line.strip().partition(" ")
        if not sep or not name.strip():
            raise VisaeError(f"{path}:{n} is not '<image_id> <name>'", "the tree is damaged; re-extract it")
        rows.append((image_id, name.strip()))
    return rows


def _read_boxes(path: Path) -> dict[str, tuple[int, int, int, int]]:
    if not path.is_file():
        raise VisaeError(f"{path} is missing, so crop=box cannot be used", "use crop=banner")
    boxes = {}
    for line in path.read_text().split("\n"):
        fields = line.split()
        if len(fields) == 5:
            boxes[fields[0]] = tuple(int(float(v)) for v in fields[1:])
    return boxes


@SOURCES.register(SCHEME)
def open_fgvc_aircraft(rest: str) -> FGVCAircraft:
    """fgvc-aircraft:PATH[?crop=banner|box|none] — the official FGVC-Aircraft 2013b tree."""
    path, options = split_options(rest, SCHEME, {"crop": CROPS})
    return FGVCAircraft(require_path(path, SCHEME), crop=options.get("crop", "banner"), spec=f"{SCHEME}:{rest}")
