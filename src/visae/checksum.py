"""File checksums: the digests artifacts record when written, and the check before a file is read.

``hash_file(path, algo)`` gives ``'algo:hexdigest'`` of a file's bytes (``xxh3_128`` where the
``xxhash`` package is installed, several GB/s; ``sha256`` otherwise). ``check_file`` verifies a
file against its recorded digest before its data is used and remembers the files that passed,
by (path, device, inode, size, mtime, ctime, digest): each file is hashed once per process
however many readers open it, and a file replaced or modified since is hashed again.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from visae.errors import VisaeError


def _xxh3() -> Any:
    import xxhash

    return xxhash.xxh3_128()


CHECKSUMS: dict[str, Callable[[], Any]] = {
    "xxh3_128": _xxh3,  # ~20 GB/s; needs the optional `xxhash` package
    "sha256": hashlib.sha256,  # ~1.6 GB/s with SHA extensions; always available
}

CHUNK = 1 << 22
"""Bytes hashed per call (a slice of the map, or of one reused read buffer)."""

_PASSED: set[tuple[Any, ...]] = set()
"""Files that matched their digest in this process (see ``check_file``)."""


def default_checksum() -> str:
    """xxh3_128 where the xxhash package is installed, else sha256."""
    try:
        import xxhash  # noqa: F401

        return "xxh3_128"
    except ImportError:
        return "sha256"


def new_hasher(algo: str) -> Any:
    if algo not in CHECKSUMS:
        raise VisaeError(f"unknown checksum algorithm '{algo}'", "this file was written by a newer visae; upgrade")
    try:
        return CHECKSUMS[algo]()
    except ImportError:
        raise VisaeError(f"the recorded checksums use {algo}", "pip install xxhash to verify them") from None


def hash_file(path: str | Path, algo: str, chunk: int = CHUNK) -> str:
    """``'algo:hexdigest'`` of a file's bytes.

    The file is hashed through a memory map (no copy: xxh3 then runs near memory speed, about
    twice a read loop's), or read ``chunk`` bytes at a time into one buffer where it cannot be
    mapped (an empty file, a pipe)."""
    h = new_hasher(algo)
    with open(path, "rb", buffering=0) as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            buf = memoryview(bytearray(chunk))
            while n := f.readinto(buf):
                h.update(buf[:n])
        else:
            with mapped, memoryview(mapped) as view:
                for i in range(0, len(view), chunk):
                    h.update(view[i : i + chunk])
    return f"{algo}:{h.hexdigest()}"


def check_file(path: str | Path, expected: str, *, what: str, repair: str) -> Path:
    """``path`` once it matches ``expected`` (``'algo:hexdigest'``); a missing, unreadable or
    changed file raises a one-line VisaeError: ``{what} is missing`` / ``fails its checksum``, then
    ``repair`` (what to do). Files that passed are not hashed again in this process."""
    path = Path(path)
    with _readable(what, repair):
        before = _identity(path, expected)
    if before in _PASSED:
        return path
    with _readable(what, repair):
        digest = hash_file(path, expected.split(":", 1)[0])
    if digest != expected:
        raise VisaeError(f"{what} fails its checksum (bit rot, a truncated file or a partial copy)", repair)
    if _identity(path, expected) == before:  # unchanged while it was hashed
        _PASSED.add(before)
    return path


@contextmanager
def _readable(what: str, repair: str) -> Iterator[None]:
    """A missing or unreadable file as a one-line VisaeError."""
    try:
        yield
    except FileNotFoundError:
        raise VisaeError(f"{what} is missing", repair) from None
    except OSError as e:
        raise VisaeError(f"{what} cannot be read ({e.strerror})", repair) from None


def _identity(path: Path, expected: str) -> tuple[Any, ...]:
    st = os.stat(path)
    return (str(path.absolute()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, expected)


class HashingWriter:
    """A write-only file wrapper that hashes what passes through it (np.save writes via .write)."""

    def __init__(self, f: Any, algo: str):
        self.f = f
        self.algo = algo
        self.h = new_hasher(algo)

    def write(self, data: Any) -> int:
        self.h.update(data)
        return self.f.write(data)

    def digest(self) -> str:
        return f"{self.algo}:{self.h.hexdigest()}"
