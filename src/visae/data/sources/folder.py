"""``folder:PATH`` — an ImageFolder tree: PATH/<class>/<images>, or PATH/<split>/<class>/<images>.

The split layout is used when every subdirectory of PATH is a split name (train, val,
validation, test). Class names are the sorted class directories (the union over splits, so a
label means the same class in every split). Images may sit in nested folders inside their
class directory. Files that are not images are ignored, counted and reported once; a class
directory without a single image is an error, since a class with no examples is almost
always a mistake in the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visae.data.base import SOURCES, Dataset, Sample, Split, read_only
from visae.data.sources.decode import check_image, decode_image, is_image_file
from visae.data.sources.options import require_path
from visae.errors import VisaeError
from visae.progress import warn
from visae.registry import relative_note

SPLIT_DIRS = ("train", "val", "validation", "test")
FLAT_SPLIT = "all"
"""The one split of a tree without split directories."""


class FolderSplit(Split):
    def __init__(self, name: str, root: Path, files: list[str], labels: np.ndarray):
        self.name = name
        self.root = root
        self.files = files
        """Image paths relative to the dataset root (posix), which are also the image ids."""
        self._labels = read_only(labels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Sample:
        rel = self.files[i]
        return Sample(decode_image(self.root / rel, rel), int(self._labels[i]), rel)

    def unreadable(self, i: int) -> str | None:
        return check_image(self.root / self.files[i])

    def image_id(self, i: int) -> str:
        return self.files[i]

    def label(self, i: int) -> int:
        return int(self._labels[i])

    @property
    def labels(self) -> np.ndarray:
        return self._labels  # read-only: a view, never a copy per call


class FolderDataset(Dataset):
    def __init__(self, path: str | Path, spec: str | None = None):
        self.root = Path(path).expanduser()
        self.spec = spec or f"folder:{path}"
        if not self.root.is_dir():
            what = "is a file, not a directory" if self.root.exists() else "does not exist" + relative_note(path)
            raise VisaeError(f"image folder {self.root} {what}", "point folder: at a directory of class folders")
        subdirs = _subdirs(self.root)
        if not subdirs:
            raise VisaeError(f"image folder {self.root} has no class directories", "lay it out as PATH/<class>/<images>")
        split_layout = all(d in SPLIT_DIRS for d in subdirs)
        split_dirs = {d: self.root / d for d in subdirs} if split_layout else {FLAT_SPLIT: self.root}
        class_dirs = {s: _subdirs(p) for s, p in split_dirs.items()}
        self.class_names = sorted({c for names in class_dirs.values() for c in names})
        if not self.class_names:
            raise VisaeError(f"image folder {self.root} has no class directories", "lay it out as PATH/<split>/<class>/<images>")
        self.ignored: list[str] = []
        """Relative paths of the non-image files found (and skipped) in the tree."""
        self._splits = {s: self._scan(s, split_dirs[s], class_dirs[s]) for s in split_dirs}
        if self.ignored:
            n = len(self.ignored)
            warn(f"{self.root}: ignored {n} non-image file{'s' * (n != 1)} (first: {self.ignored[0]})")

    def _scan(self, split: str, split_dir: Path, classes: list[str]) -> FolderSplit:
        index = {c: k for k, c in enumerate(self.class_names)}
        files: list[str] = []
        labels: list[int] = []
        for c in classes:
            found = 0
            for rel in _walk_files(split_dir / c):
                rel_root = (split_dir / c / rel).relative_to(self.root).as_posix()
                if is_image_file(rel):
                    files.append(rel_root)
                    labels.append(index[c])
                    found += 1
                else:
                    self.ignored.append(rel_root)
            if found == 0:
                raise VisaeError(
                    f"class directory {split_dir / c} holds no images",
                    "add images to it or remove it (every class needs examples)",
                )
        return FolderSplit(split, self.root, files, np.array(labels, dtype=np.int64))

    def split_names(self) -> list[str]:
        return list(self._splits)

    def _open_split(self, name: str) -> Split:
        return self._splits[name]


def _subdirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _walk_files(top: Path) -> list[str]:
    """Non-hidden files under ``top``, relative to it, in a stable (sorted) order."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(top)
        out.extend((rel_dir / f).as_posix() for f in sorted(filenames) if not f.startswith("."))
    return out


@SOURCES.register("folder")
def open_folder(rest: str) -> FolderDataset:
    """folder:PATH — class directories of images (optionally under train/val/test)."""
    return FolderDataset(require_path(rest, "folder"), spec=f"folder:{rest}")
