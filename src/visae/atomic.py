"""Atomic writes: write to a temporary name beside the target, fsync, rename.

The temporary name is ``.NAME.<random>.tmp`` beside NAME; ``remove_temporaries`` deletes
the ones a killed process left (a stage calls it, through its output lock, before it
writes). Every file gets the user's usual mode (``0666 & ~umask``) whatever the library
that wrote it chose (safetensors writes 0600).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read at import, before any thread could be writing; /proc gives the current one
TEMPORARY = re.compile(r"^\..+\.tmp(-journal|-wal|-shm)?$")
"""Names of the temporary files (and folders) of atomic writes, with SQLite's side files."""


def umask() -> int:
    """The process's current umask (Linux: read from /proc without changing it; else the one at import)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK


def file_mode() -> int:
    """The mode a new file gets from ``open``: 0666 & ~umask."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode a new directory gets from ``mkdir``: 0777 & ~umask."""
    return 0o777 & ~umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on clean exit it is fsynced and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _pause_for_tests()
        os.chmod(tmp_path, file_mode())  # mkstemp and some writers (safetensors) make 0600: the usual mode
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write ``path`` with a function that writes to the path it is given."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(root: str | Path, *, skip: Callable[[Path], bool] = lambda d: False) -> list[Path]:
    """Delete the temporary files and folders of atomic writes under ``root`` (recursively, not through
    links); subfolders for which ``skip`` is true are left alone. Only call it while no other process
    can be writing there (under the directory's lock). Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for e in entries:
        path = Path(e.path)
        if TEMPORARY.match(e.name):
            try:
                shutil.rmtree(path) if e.is_dir(follow_symlinks=False) else path.unlink()
                removed.append(path)
            except OSError:
                pass
        elif e.is_dir(follow_symlinks=False) and not skip(path):
            removed += remove_temporaries(path, skip=skip)
    return removed


_writes = 0


def _pause_for_tests() -> None:
    """Test hook: ``VISAE_TEST_PAUSE=N:PATH`` pauses the process in its N-th atomic write (written, not yet
    renamed) until PATH exists (at most 2 minutes), after creating PATH.waiting: a writer that is
    deterministically "still running" for the concurrency tests. Unset, it costs one lookup."""
    global _writes
    spec = os.environ.get("VISAE_TEST_PAUSE")
    if not spec:
        return
    _writes += 1
    n, _, gate = spec.partition(":")
    if _writes != int(n):
        return
    Path(gate + ".waiting").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
