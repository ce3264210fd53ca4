"""Check a store end to end: every file present, every checksum, shape, count and index entry.

``verify(path)`` re-hashes each committed shard file and cross-checks the token index
against the per-image table; it reports problems rather than raising, so the CLI can list
them all and say what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visae.artifact import read_marker
from visae.errors import VisaeError
from visae.progress import track
from visae.store.format import INDEX_DTYPE, KIND, ShardInfo, StoreMeta, hash_file, load_meta
from visae.store.writer import _SHARD_FILE


@dataclass
class Problem:
    kind: str
    """missing | corrupt | shape | index | partial | incomplete"""
    where: str
    detail: str


@dataclass
class VerifyReport:
    path: Path
    meta: StoreMeta
    problems: list[Problem] = field(default_factory=list)
    shards_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged(self) -> bool:
        """Committed data is wrong (not merely unfinished): resuming cannot fix it."""
        return any(p.kind in ("missing", "corrupt", "shape", "index") for p in self.problems)

    def hint(self) -> str:
        if self.damaged:
            return "re-extract the store: rerun the same `visae extract` command with --force"
        return "finish it: rerun the same `visae extract` command with --resume"


def verify(path: str | Path) -> VerifyReport:
    path = Path(path)
    marker = read_marker(path) if path.is_dir() else None
    if marker is None or marker.get("kind") != KIND:
        what = f"a visae {marker.get('kind')}" if marker else "not a visae artifact"
        raise VisaeError(f"{path} is not an activation store ({what})", "pass a directory written by `visae extract`")
    meta = load_meta(path)
    report = VerifyReport(path, meta)
    token_start = 0
    for shard in track(meta.shards, "verifying shards"):
        _check_shard(path, meta, shard, token_start, report)
        token_start += shard.n_tokens
        report.shards_checked += 1
    _check_totals(path, meta, token_start, report)
    return report


def _check_shard(path: Path, meta: StoreMeta, shard: ShardInfo, token_start: int, report: VerifyReport) -> None:
    files = shard.files
    for role, name in files.items():
        f = path / name
        if not f.is_file():
            report.problems.append(Problem("missing", name, f"shard {shard.name}'s {role} file is missing"))
            return
        digest = hash_file(f, meta.checksum)
        if digest != shard.checksums.get(name):
            report.problems.append(Problem("corrupt", name, "checksum mismatch (the file changed after it was written)"))
            return
    data = np.load(path / files["data"], mmap_mode="r")
    if data.shape != (shard.n_tokens, meta.d) or data.dtype != meta.storage.numpy:
        got = f"{data.shape} {data.dtype}"
        report.problems.append(Problem("shape", files["data"], f"holds {got}, expected ({shard.n_tokens}, {meta.d}) {meta.storage.numpy}"))
        return
    rows = np.load(path / files["index"])
    if rows.dtype != INDEX_DTYPE or len(rows) != shard.n_tokens:
        report.problems.append(Problem("shape", files["index"], f"holds {len(rows)} rows of {rows.dtype}"))
        return
    table = json.loads((path / files["images"]).read_text())
    _check_images(shard, table, rows, token_start, report)


def _check_images(shard: ShardInfo, table: dict, rows: np.ndarray, token_start: int, report: VerifyReport) -> None:
    """Each image listed here starts where the table says, with its image number and label."""
    where = shard.files["images"]
    if len(table.get("image", [])) != shard.n_images:
        report.problems.append(Problem("index", where, f"lists {len(table.get('image', []))} images, metadata says {shard.n_images}"))
        return
    for image, start, label in zip(table["image"], table["token_start"], table["label"]):
        r = start - token_start
        if not 0 <= r < len(rows) or rows["image"][r] != image or rows["label"][r] != label:
            report.problems.append(Problem("index", where, f"image {image} does not start at token {start}"))
            return
        if r > 0 and rows["image"][r - 1] == image:
            report.problems.append(Problem("index", where, f"image {image} has tokens before token {start}"))
            return


def _check_totals(path: Path, meta: StoreMeta, n_tokens: int, report: VerifyReport) -> None:
    if n_tokens != meta.n_tokens or sum(s.n_images for s in meta.shards) != meta.n_images:
        report.problems.append(Problem("index", "metadata.json", "shard totals do not add up to n_tokens / n_images"))
    sizes = [s.n_tokens for s in meta.shards]
    # full shards but the last, or (a store merged from torchrun ranks) the last of each rank's share
    if any(not 0 < n <= meta.shard_tokens for n in sizes):
        report.problems.append(Problem("shape", "metadata.json", f"shards are not all 1 .. {meta.shard_tokens} tokens"))
    if meta.stats.file and not (path / meta.stats.file).is_file():
        report.problems.append(Problem("missing", meta.stats.file, "normalisation statistics are missing"))
    elif meta.stats.checksum and hash_file(path / str(meta.stats.file), meta.checksum) != meta.stats.checksum:
        report.problems.append(Problem("corrupt", str(meta.stats.file), "checksum mismatch (the file changed after it was written)"))
    leftovers = [
        f.name
        for f in path.iterdir()
        if (f.name.startswith(".") and f.name.endswith(".tmp"))
        or ((m := _SHARD_FILE.match(f.name)) and int(m.group(2)) >= len(meta.shards))
    ]
    if leftovers:
        report.problems.append(Problem("partial", ", ".join(sorted(leftovers)[:4]), "an interrupted write left an uncommitted shard"))
    if not meta.complete:
        done = f"{meta.n_images} of {meta.planned_images} images, {len(meta.shards)} shards"
        report.problems.append(Problem("incomplete", "metadata.json", f"extraction did not finish ({done})"))
