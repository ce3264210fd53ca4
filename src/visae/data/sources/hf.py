"""``hf:NAME[:SPLIT]`` — a Hugging Face ``datasets`` dataset, read locally.

NAME is a local path (a directory written by ``save_to_disk``, or any folder ``load_dataset``
reads, such as an imagefolder) or a hub name already in the local cache (read as under
``HF_HUB_OFFLINE=1``: the network is never asked, so a name that is not cached fails at once). ``:SPLIT``
restricts the dataset to one split. The image column is the first ``Image`` feature; the
label column the first ``ClassLabel`` (its names become ``class_names``), else an integer
column named ``label``/``labels`` (names '0', '1', ...), else labels are -1.
Images are decoded by visae (not by ``datasets``), so broken ones become ``CorruptImage``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from visae.data.base import SOURCES, CorruptImage, Dataset, Sample, Split, read_only
from visae.data.sources.decode import check_image, decode_image
from visae.errors import VisaeError

SCHEME = "hf"


class HFSplit(Split):
    def __init__(self, name: str, table: Any, image_column: str, labels: np.ndarray):
        import datasets

        self.name = name
        self.table = table.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        self.image_column = image_column
        self._labels = read_only(labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> Sample:
        image_id = self.image_id(i)
        cell = self.table[int(i)][self.image_column] or {}
        if cell.get("bytes"):
            image = decode_image(cell["bytes"], image_id)
        elif cell.get("path"):
            image = decode_image(Path(cell["path"]), image_id)
        else:
            raise CorruptImage(image_id, "no image data in the row")
        return Sample(image, int(self._labels[i]), image_id)

    def unreadable(self, i: int) -> str | None:
        cell = self.table[int(i)][self.image_column] or {}
        if cell.get("bytes"):
            return check_image(cell["bytes"])
        return check_image(Path(cell["path"])) if cell.get("path") else "no image data in the row"

    def image_id(self, i: int) -> str:
        return f"{self.name}/{i}"

    def label(self, i: int) -> int:
        return int(self._labels[i])

    @property
    def labels(self) -> np.ndarray:
        return self._labels  # read-only: a view, never a copy per call


class HFDataset(Dataset):
    def __init__(self, name: str, split: str | None = None, spec: str | None = None):
        self.spec = spec or f"{SCHEME}:{name}" + (f":{split}" if split else "")
        tables = _load(name)
        if split is not None:
            if split not in tables:
                raise VisaeError(f"Hugging Face dataset '{name}' has no split '{split}'", f"its splits are: {', '.join(tables)}")
            tables = {split: tables[split]}
        self._tables = tables
        features = next(iter(tables.values())).features
        self.image_column = _image_column(features, name)
        self.label_column, names = _label_column(features, tables)
        self.class_names = names
        self._cache: dict[str, HFSplit] = {}

    def split_names(self) -> list[str]:
        return list(self._tables)

    def _open_split(self, name: str) -> Split:
        if name not in self._cache:
            table = self._tables[name]
            if self.label_column is None:
                labels = np.full(len(table), -1, dtype=np.int64)
            else:
                labels = np.asarray(table[self.label_column], dtype=np.int64)
            self._cache[name] = HFSplit(name, table, self.image_column, labels)
        return self._cache[name]


def _load(name: str) -> dict[str, Any]:
    """``{split: datasets.Dataset}`` from a local path or the local cache."""
    try:
        import datasets
    except ImportError:
        raise VisaeError("the hf: data source needs the 'datasets' package", "pip install 'visae[datasets]'") from None
    try:
        if Path(name).expanduser().exists():
            try:
                loaded = datasets.load_from_disk(str(Path(name).expanduser()))
            except FileNotFoundError:  # not a save_to_disk directory: let load_dataset read the folder
                loaded = datasets.load_dataset(str(Path(name).expanduser()))
        else:
            with _hub_offline(datasets):
                loaded = datasets.load_dataset(name)
    except Exception as e:  # datasets raises many types for 'not here / not reachable'
        raise VisaeError(
            f"could not load Hugging Face dataset '{name}' from a local path or the local cache "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})",
            "pass a local directory saved with save_to_disk, or download the dataset into the Hugging Face cache "
            "where there is network (datasets.load_dataset(NAME))",
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {str(loaded.split) if loaded.split else "train": loaded}
    return {str(k): v for k, v in loaded.items()}


@contextlib.contextmanager
def _hub_offline(datasets: Any) -> Iterator[None]:
    """Read hub names from the local cache only, as under HF_HUB_OFFLINE=1 (which both libraries read
    at import time): a name that is not cached fails at once instead of retrying the network."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _image_column(features: Any, name: str) -> str:
    import datasets

    for col, feature in features.items():
        if isinstance(feature, datasets.Image):
            return col
    raise VisaeError(f"Hugging Face dataset '{name}' has no Image column (columns: {', '.join(features)})", "use a dataset of images")


def _label_column(features: Any, tables: dict[str, Any]) -> tuple[str | None, list[str]]:
    import datasets

    for col, feature in features.items():
        if isinstance(feature, datasets.ClassLabel):
            return col, [str(n) for n in feature.names]
    for col in ("label", "labels"):
        feature = features.get(col)
        if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
            top = max((int(np.max(np.asarray(t[col]), initial=-1)) for t in tables.values()), default=-1)
            return col, [str(k) for k in range(top + 1)]
    return None, []


def parse_name(rest: str) -> tuple[str, str | None]:
    """``'NAME:SPLIT'`` -> ``(NAME, SPLIT)``; a ':' followed by a path is part of NAME."""
    name, sep, split = rest.rpartition(":")
    if sep and name and split and "/" not in split and "\\" not in split:
        return name, split
    return rest, None


@SOURCES.register(SCHEME)
def open_hf(rest: str) -> HFDataset:
    """hf:NAME[:SPLIT] — a Hugging Face dataset from a local path or the local cache."""
    if not rest.strip():
        raise VisaeError("the hf spec names no dataset", "write hf:PATH_OR_NAME[:SPLIT]")
    name, split = parse_name(rest)
    return HFDataset(name, split, spec=f"{SCHEME}:{rest}")
