"""One writer per output directory: an exclusive advisory lock held while a stage writes.

``with locked(OUT):`` takes ``OUT/.visae.lock`` with ``fcntl.flock`` (exclusive, without
waiting) and writes the holder's PID and command line into it; a second process gets a
one-line ``VisaeError`` naming them. The OS drops the lock when the process ends, however it
ends, so a killed run never blocks the next one. The lock file stays in place while the lock
is held (a ``--force`` wipe keeps it: deleting it then would let a newcomer lock a new file)
and is deleted on release, still locked; a process that opened the old file meanwhile sees,
once it holds the lock, that the file is no longer the one at the path, and tries again. So
a finished artifact holds no lock file; a killed writer's stays until the next writer.
Locks are re-entrant within a process, and forked children (data-loader and render workers)
close their copies, so a worker outliving a killed parent does not keep the directory locked.

A directory the lock created is removed again on release if the stage left nothing in it, so
a refused command leaves no empty folder behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from visae.errors import VisaeError

LOCK_NAME = ".visae.lock"


@dataclass
class _Held:
    path: Path
    fd: int
    created: list[Path] = field(default_factory=list)
    """Directories the lock created, deepest first (removed on release when left empty)."""
    count: int = 1


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def _forget_in_child() -> None:
    for h in _held.values():
        try:
            os.close(h.fd)  # the parent keeps its own descriptor, and with it the lock
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def holds(directory: str | Path) -> bool:
    """Whether this process holds the lock of ``directory``."""
    return os.path.realpath(directory) in _held


@contextmanager
def locked(directory: str | Path) -> Iterator[Path]:
    """Hold ``directory``'s lock (creating the directory) for the duration of the block."""
    path = acquire(directory)
    try:
        yield path
    finally:
        release(path)


def acquire(directory: str | Path) -> Path:
    """Take ``directory``'s lock (re-entrant); refused with a VisaeError while another process holds it."""
    path = Path(directory)
    with _guard:
        key = os.path.realpath(path)
        if key in _held:
            _held[key].count += 1
            return path
        created = _make_dir(path)
        try:
            fd = _lock(path)
        except BaseException:
            _remove_empty(created)
            raise
        _held[os.path.realpath(path)] = _Held(path, fd, created)
    _write_owner(fd)
    return path


def release(directory: str | Path) -> None:
    """Give back one hold of ``directory``'s lock; the last one deletes the lock file and closes it."""
    with _guard:
        key = os.path.realpath(directory)
        if key not in _held:  # the folder was deleted while held (a wipe): find it by its path
            key = next((k for k, h in _held.items() if h.path == Path(directory)), key)
        h = _held.get(key)
        if h is None:
            return
        h.count -= 1
        if h.count:
            return
        del _held[key]
        if _is_ours(h):  # (a folder wiped while locked may hold a newcomer's file by now)
            (h.path / LOCK_NAME).unlink(missing_ok=True)
        _remove_empty(h.created)
        os.close(h.fd)


def _make_dir(path: Path) -> list[Path]:
    """Create ``path`` (and missing parents); returns the directories created, deepest first."""
    if path.is_dir():
        return []
    if path.exists() or path.is_symlink():
        raise VisaeError(f"{path} is a file, not a directory", "choose another --out")
    missing, p = [], path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise VisaeError(f"cannot create {path}: a part of the path is a file", "choose another --out") from None
    except OSError as e:
        raise VisaeError(f"cannot create {path} ({e.strerror})", "choose another --out, or fix its permissions") from None
    return missing


def _lock(path: Path) -> int:
    """An open descriptor of ``path/.visae.lock`` holding its exclusive lock."""
    lock_file = path / LOCK_NAME
    for _ in range(20):
        fd = _open(path, lock_file)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise VisaeError(
                f"{path} is in use by another visae process ({owner})",
                "wait for it to finish, or stop it; a stopped process releases the directory at once",
            ) from None
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                _warn_unlockable(path, e)
                return fd
            os.close(fd)
            raise VisaeError(f"cannot lock {path} ({e.strerror})", "choose another --out") from None
        try:  # the file may have been removed by its last holder between our open and our lock
            a, b = os.fstat(fd), os.stat(lock_file)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
        path.mkdir(parents=True, exist_ok=True)
    raise VisaeError(f"cannot lock {path}: its lock file keeps changing", "try again")


def _open(path: Path, lock_file: Path) -> int:
    try:
        return os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        pass  # another user's lock file in a directory we may write: locking needs only a read
    except OSError as e:
        raise VisaeError(f"cannot write to {path} ({e.strerror})", "choose another --out, or fix its permissions") from None
    try:
        return os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise VisaeError(f"cannot write to {path} ({e.strerror})", "choose another --out, or fix its permissions") from None


def _command() -> str:
    """This process's command line, short: ``visae extract --out ...``."""
    first = sys.argv[0] if sys.argv else ""
    if first == "-c" or not first:
        head = ["python", "-c"] if first else ["python"]
    elif Path(first).name == "__main__.py":
        head = ["python", "-m", Path(first).parent.name]
    else:
        head = [Path(first).name]
    cmd = shlex.join([*head, *sys.argv[1:]])
    return cmd if len(cmd) <= 160 else cmd[:157] + "..."


def _write_owner(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{_command()}\n".encode(), 0)
    except OSError:
        pass  # a read-only lock file: the lock holds all the same, without the owner's name


def _owner(fd: int) -> str:
    """'PID N: command' of the holder, as it wrote it."""
    try:
        lines = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    except OSError:
        lines = []
    if not lines or not lines[0].strip().isdigit():
        return "PID unknown"
    return f"PID {lines[0].strip()}" + (f": {lines[1].strip()}" if len(lines) > 1 and lines[1].strip() else "")


def _is_ours(h: _Held) -> bool:
    """Whether the file at ``h.path/.visae.lock`` is the one ``h`` holds locked."""
    try:
        a, b = os.fstat(h.fd), os.stat(h.path / LOCK_NAME)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


_warned: set[str] = set()


def _warn_unlockable(path: Path, e: OSError) -> None:
    from visae.progress import warn

    if str(path) not in _warned:
        _warned.add(str(path))
        warn(f"{path}: the file system does not support locks ({e.strerror}); nothing stops a second writer")
