"""One interface for every image source: a spec string opens a ``Dataset`` of splits.

``open_dataset("folder:/data/birds")``, ``open_dataset("synth-aircraft:runs/demo/data")``...
Each scheme registers a factory in ``SOURCES``. A ``Split`` is random access: ``split[i]``
returns a ``Sample`` (HWC uint8 RGB image, label, id, optional part-label map). Unreadable
images raise ``CorruptImage``; ``visae.data.loader.ImageLoader`` skips, counts and reports them.
Array-backed sources subclass ``ArraySplit`` so the loader can slice whole batches at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visae.errors import VisaeError
from visae.registry import Registry, split_spec


class CorruptImage(Exception):
    """An image that cannot be decoded; the caller skips it and counts it."""

    def __init__(self, image_id: str, reason: str):
        self.image_id = image_id
        self.reason = reason
        super().__init__(f"{image_id}: {reason}")


@dataclass(frozen=True)
class Sample:
    image_HWC: np.ndarray
    """RGB uint8 image, shape (H, W, 3)."""
    label: int
    """Index into ``Dataset.class_names``; -1 when unknown or outside the label set."""
    image_id: str
    """Stable identifier (relative path, or split/index for array-backed sources)."""
    parts_HW: np.ndarray | None = None
    """Optional ground-truth part label map (uint8, 0 = background), same H, W as the image."""


class Split(ABC):
    """A random-access list of samples."""

    name: str

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, i: int) -> Sample: ...

    @abstractmethod
    def image_id(self, i: int) -> str:
        """The id of sample ``i`` without decoding it."""

    @abstractmethod
    def label(self, i: int) -> int:
        """The label of sample ``i`` without decoding it."""

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.label(i) for i in range(len(self))], dtype=np.int64)

    def unreadable(self, i: int) -> str | None:
        """Why image ``i`` cannot be read, or None when it can (file sources check more cheaply than this decode)."""
        try:
            self[i]
        except CorruptImage as e:
            return e.reason
        return None


def read_only(array: np.ndarray) -> np.ndarray:
    """``array`` marked read-only, so a split can hand out its labels without copying them."""
    array.setflags(write=False)
    return array


class ArraySplit(Split):
    """A split held in arrays of same-sized images: whole batches are sliced at once.

    Subclasses provide ``images``/``parts``/``labels_at`` over index arrays; single-sample
    access is derived from them, and the loader takes a vectorised path for these.
    """

    @abstractmethod
    def images(self, indices_B: np.ndarray) -> np.ndarray:
        """Images at ``indices_B`` as one uint8 (B, H, W, 3) array."""

    def parts(self, indices_B: np.ndarray) -> np.ndarray | None:
        """Part maps at ``indices_B`` as uint8 (B, H, W), or None when the source has none."""
        return None

    def labels_at(self, indices_B: np.ndarray) -> np.ndarray:
        """Labels at ``indices_B`` as int64 (B,)."""
        return self.labels[np.asarray(indices_B, dtype=np.int64)]

    def label(self, i: int) -> int:
        return int(self.labels[i])

    def unreadable(self, i: int) -> str | None:
        return None  # arrays of pixels are always readable

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for split '{self.name}' of {len(self)} images")
        i = i % len(self)
        idx = np.array([i])
        parts = self.parts(idx)
        return Sample(self.images(idx)[0], self.label(i), self.image_id(i), None if parts is None else parts[0])


@dataclass
class Hierarchy:
    """A label tree: ``levels`` names its depths (leaf first), ``parents[level][name]`` the parent."""

    levels: list[str]
    """e.g. ['variant', 'family', 'manufacturer'] for aircraft."""
    parents: dict[str, dict[str, str]] = field(default_factory=dict)
    """For each level but the last, child name -> parent name at the next level."""

    def ancestor(self, name: str, level: str) -> str:
        """The ancestor of leaf ``name`` at ``level``."""
        for lv in self.levels:
            if lv == level:
                return name
            name = self.parents[lv][name]
        raise KeyError(level)

    def to_json(self) -> dict[str, Any]:
        return {"levels": self.levels, "parents": self.parents}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Hierarchy":
        return cls(levels=list(obj["levels"]), parents={k: dict(v) for k, v in obj["parents"].items()})


class Dataset(ABC):
    """A named image source with a label set, optional hierarchy and named splits."""

    spec: str
    class_names: list[str]
    hierarchy: Hierarchy | None = None
    part_names: list[str] | None = None
    """Names of the part ids in ``Sample.parts_HW`` (index 0 = background), where there are masks."""

    @abstractmethod
    def split_names(self) -> list[str]: ...

    @abstractmethod
    def _open_split(self, name: str) -> Split: ...

    def split(self, name: str) -> Split:
        names = self.split_names()
        if name not in names:
            raise VisaeError(f"{self.spec} has no split '{name}'", f"its splits are: {', '.join(names)}")
        return self._open_split(name)

    def default_split(self, purpose: str) -> str:
        """The split to use for 'train' or 'val' when the user names none."""
        names = self.split_names()
        wanted = {"train": ["train", "trainval"], "val": ["val", "validation", "test"]}[purpose]
        for w in wanted:
            if w in names:
                return w
        return names[0]


SOURCES: Registry[Callable[[str], Dataset]] = Registry("data source scheme")
"""scheme -> factory taking the rest of the spec string."""


def open_dataset(spec: str) -> Dataset:
    """Open an image source from its spec string (``folder:PATH``, ``synth-aircraft:PATH``...)."""
    from visae.data import sources  # noqa: F401  (registers the built-in schemes)

    scheme, rest = split_spec(spec)
    if scheme not in SOURCES and rest == "" and "/" in spec:
        raise VisaeError(f"data spec '{spec}' has no scheme", f"write folder:{spec} or synth-aircraft:{spec}")
    factory = SOURCES.get(scheme)
    return factory(rest)
