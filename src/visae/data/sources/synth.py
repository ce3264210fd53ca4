"""``synth-aircraft:PATH`` — the procedural aircraft dataset (visae's own generator writes it).

Layout (format_version 1)::

    DIR/visae.json                 marker, kind "synth-aircraft"
    DIR/info.json                  seed, size, splits {name: N}, class_names, ood_variants, part_names
    DIR/hierarchy.json             Hierarchy.to_json(): levels variant/family/manufacturer
    DIR/<split>/images.npy         uint8 (N, S, S, 3)
    DIR/<split>/parts.npy          uint8 (N, S, S), 0 = background
    DIR/<split>/manifest.jsonl     one row per image: index, id, variant, family, manufacturer, label, factors...

Images and part maps are memory-mapped, never read whole: the loader slices batches out of
them. Labels index ``class_names``; the ``ood`` split holds variants outside it (label -1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visae.artifact import read_marker
from visae.data.base import SOURCES, ArraySplit, Dataset, Hierarchy, Split, read_only
from visae.data.sources.options import require_path
from visae.errors import VisaeError
from visae.registry import relative_note

KIND = "synth-aircraft"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "ood")


class SynthSplit(ArraySplit):
    def __init__(self, name: str, images_NHWC: np.ndarray, parts_NHW: np.ndarray, rows: list[dict[str, Any]]):
        self.name = name
        self.images_NHWC = images_NHWC
        self.parts_NHW = parts_NHW
        self.rows = rows
        """The manifest rows (variant, family, manufacturer, label and generation factors)."""
        self._labels = read_only(np.array([int(r["label"]) for r in rows], dtype=np.int64))
        self._ids = [str(r["id"]) for r in rows]

    def __len__(self) -> int:
        return len(self._ids)

    def images(self, indices_B: np.ndarray) -> np.ndarray:
        return np.asarray(self.images_NHWC[np.asarray(indices_B, dtype=np.int64)])

    def parts(self, indices_B: np.ndarray) -> np.ndarray:
        return np.asarray(self.parts_NHW[np.asarray(indices_B, dtype=np.int64)])

    def image_id(self, i: int) -> str:
        return self._ids[i]

    @property
    def labels(self) -> np.ndarray:
        return self._labels  # read-only: a view, never a copy per call


class SynthAircraft(Dataset):
    def __init__(self, path: str | Path, spec: str | None = None):
        self.root = Path(path).expanduser()
        self.spec = spec or f"{KIND}:{path}"
        _check_marker(self.root)
        self.info = _read_json(self.root / "info.json")
        missing = [k for k in ("format_version", "size", "splits", "class_names", "part_names") if k not in self.info]
        if missing:
            raise VisaeError(f"{self.root / 'info.json'} lacks {', '.join(missing)}", "regenerate the dataset")
        version = self.info.get("format_version")
        if version != FORMAT_VERSION:
            raise VisaeError(
                f"{self.root} is synth-aircraft format {version}; this visae reads format {FORMAT_VERSION}",
                "regenerate the dataset with this visae version",
            )
        self.class_names = [str(c) for c in self.info["class_names"]]
        self.part_names = [str(p) for p in self.info["part_names"]]
        self.hierarchy = Hierarchy.from_json(_read_json(self.root / "hierarchy.json"))
        self._sizes = {s: int(n) for s, n in self.info["splits"].items()}
        self._cache: dict[str, SynthSplit] = {}

    def split_names(self) -> list[str]:
        return [s for s in SPLITS if s in self._sizes] + [s for s in self._sizes if s not in SPLITS]

    def _open_split(self, name: str) -> Split:
        if name not in self._cache:
            self._cache[name] = self._load_split(name)
        return self._cache[name]

    def _load_split(self, name: str) -> SynthSplit:
        d = self.root / name
        images = _mmap(d / "images.npy")
        parts = _mmap(d / "parts.npy")
        rows = _read_manifest(d / "manifest.jsonl")
        n = self._sizes[name]
        size = int(self.info["size"])
        problems = []
        if images.shape != (n, size, size, 3) or images.dtype != np.uint8:
            problems.append(f"images.npy is {images.dtype}{list(images.shape)}, expected uint8{[n, size, size, 3]}")
        if parts.shape != (n, size, size) or parts.dtype != np.uint8:
            problems.append(f"parts.npy is {parts.dtype}{list(parts.shape)}, expected uint8{[n, size, size]}")
        if len(rows) != n:
            problems.append(f"manifest.jsonl has {len(rows)} rows, expected {n}")
        if problems:
            raise VisaeError(f"{d} is inconsistent: " + "; ".join(problems), "regenerate the dataset")
        return SynthSplit(name, images, parts, rows)


def _check_marker(root: Path) -> None:
    if not root.is_dir():
        raise VisaeError(f"synth-aircraft directory {root} does not exist{relative_note(root)}",
                         "generate it first with visae's synthetic aircraft generator")  # fmt: skip
    marker = read_marker(root)
    if marker is None or marker.get("kind") != KIND:
        found = f"a visae {marker.get('kind')}" if marker else "no visae.json marker"
        raise VisaeError(f"{root} is not a synth-aircraft dataset ({found})", "point synth-aircraft: at a generated dataset")
    if marker.get("complete") is False:
        raise VisaeError(
            f"synth-aircraft dataset {root} is incomplete (its generation was interrupted or is still running)",
            "let the generator finish, or generate it again",
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VisaeError(f"{path} is missing", "regenerate the dataset") from None
    except json.JSONDecodeError as e:
        raise VisaeError(f"{path} is not valid JSON ({e})", "regenerate the dataset") from None


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise VisaeError(f"{path} is missing", "regenerate the dataset") from None
    except json.JSONDecodeError as e:
        raise VisaeError(f"{path} has a bad line ({e})", "regenerate the dataset") from None


def _mmap(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise VisaeError(f"{path} is missing", "regenerate the dataset") from None
    except ValueError as e:
        raise VisaeError(f"{path} is not a readable .npy file ({e})", "regenerate the dataset") from None


@SOURCES.register(KIND)
def open_synth_aircraft(rest: str) -> SynthAircraft:
    """synth-aircraft:PATH — a dataset written by visae's procedural aircraft generator."""
    return SynthAircraft(require_path(rest, KIND), spec=f"{KIND}:{rest}")
