"""The CLI's one error path: any exception -> one line that says what was wrong and what to do.

``visae.cli.main`` prints ``error: {explain(e)}`` and exits with status 2. A ``VisaeError``
already says both; an ``OSError`` names the path and the system's reason; a file that a
library could not parse (safetensors, torch, JSON, zip, SQLite) becomes ``cannot read
FILE (...)``; anything else is a bug, reported as ``internal error: ...`` with a pointer to
``--debug`` (or ``VISAE_DEBUG=1``), which prints the traceback as well.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import sqlite3
import zipfile
from pathlib import Path
from types import TracebackType

from visae.errors import VisaeError

DEBUG_HINT = "rerun with --debug for the traceback"

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EEXIST}
"""Errors that only writing can cause."""

OS_HINTS = {
    errno.EACCES: "check its permissions, or choose a path you can write to",
    errno.EPERM: "check its permissions, or choose a path you can write to",
    errno.ENOSPC: "free some disk space, or write to another disk",
    errno.EDQUOT: "free some space within your quota, or write to another disk",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.EFBIG: "the file is too large for this file system; write to another disk",
    errno.ENAMETOOLONG: "use a shorter path (at most 255 bytes per name)",
    errno.EISDIR: "it is a directory; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a directory; check the path",
    errno.ENOENT: "check that the path exists",
    errno.EEXIST: "remove it or choose another path",
    errno.EIO: "the disk reported an I/O error; check the device or copy the data elsewhere",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.ENFILE: "too many open files on this machine; close some programs",
    errno.ELOOP: "the path has a symbolic-link loop; check the path",
}

PARSE_ERRORS = (json.JSONDecodeError, pickle.UnpicklingError, zipfile.BadZipFile, sqlite3.DatabaseError, EOFError)
"""Errors of a file that could be opened but not parsed (safetensors' and tomllib's are matched by name)."""

PATH_NAMES = ("path", "filename", "file", "fname", "f", "resolved_archive_file", "archive_file", "checkpoint_file")
"""Local variable names that, in the frames a parse error passed through, usually hold the file being read."""


class FileEndedEarly(Exception):
    """An ``EOFError`` from inside a command, carried past click (which reports it as "Aborted!")."""

    def __init__(self, error: EOFError):
        super().__init__(str(error) or "unexpected end of file")
        self.error = error


def explain(e: BaseException) -> str:
    """One line (message; what to do) for any exception that reached the CLI."""
    if isinstance(e, FileEndedEarly):
        e = e.error
    if isinstance(e, VisaeError):
        return str(e)
    if _is_out_of_memory(e):
        return (f"out of memory{_allocation(e)}; use smaller batches (--batch-size), smaller inputs (--size), "
                "fewer images (--max-images) or a machine with more memory")  # fmt: skip
    if isinstance(e, OSError) and (e.errno is not None or e.filename is not None):
        return os_error(e)
    if _is_parse_error(e):
        where = _path_in_traceback(e.__traceback__, existing=True)
        what = f"cannot read {where}" if where else "cannot read a file"
        return f"{what} ({type(e).__name__}: {first_line(e)}); it is damaged or not in the expected format: " \
               f"re-create it, or {DEBUG_HINT}"  # fmt: skip
    if isinstance(e, (OSError, sqlite3.OperationalError)):  # a library's, without a path: its message says what
        return f"{first_line(e)}; check the path and the file, or {DEBUG_HINT}"
    return f"internal error: {type(e).__name__}: {first_line(e)} (please report it; {DEBUG_HINT})"


def _is_out_of_memory(e: BaseException) -> bool:
    """MemoryError, and torch's: OutOfMemoryError (GPU), RuntimeError "can't allocate memory" (CPU)."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "out of memory" in str(e))


def _allocation(e: BaseException) -> str:
    found = re.search(r"allocate (\d+) bytes", str(e)) or re.search(r"allocate ([\d.]+ [KMGT]iB)", str(e))
    if found is None:
        return ""
    size = found.group(1)
    return f" (tried to allocate {int(size) / 2**30:,.1f} GiB)" if size.isdigit() else f" (tried to allocate {size})"


def os_error(e: OSError) -> str:
    """``cannot write PATH: reason; hint`` (read / access where writing is not the cause)."""
    path = e.filename if e.filename is not None else e.filename2
    if path is None:  # a write() or read() on an open file: the frames it passed through name the file
        path = _path_in_traceback(e.__traceback__, existing=False)
    reason = e.strerror or first_line(e)
    hint = OS_HINTS.get(e.errno, "check the path")
    if path is None:
        return f"{reason}; {hint}"
    if e.errno in (errno.EEXIST, errno.ENOTDIR) and os.path.isfile(path):  # mkdir where a file is in the way
        reason, hint = "it is a file, where a directory is needed", "remove it or choose another path"
    return f"cannot {_verb(e, path)} {short_path(path)}: {reason}; {hint}"


def _verb(e: OSError, path: object) -> str:
    if e.errno in WRITE_ERRNOS:
        return "write"
    if e.errno in (errno.EACCES, errno.EPERM):
        try:
            exists = os.path.lexists(path)  # type: ignore[arg-type]
            return "read" if exists and not os.access(path, os.R_OK) else "write"  # type: ignore[arg-type]
        except (OSError, TypeError, ValueError):
            return "access"
    return "access"


def short_path(path: object, limit: int = 160) -> str:
    """A path as text, its middle cut out when it is longer than ``limit`` characters."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    if len(text) <= limit:
        return text
    return f"{text[:60]}...{text[-60:]} ({len(text)} characters)"


def first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(e).__name__


def _is_parse_error(e: BaseException) -> bool:
    if isinstance(e, PARSE_ERRORS) and not isinstance(e, sqlite3.OperationalError):  # (locked, I/O error)
        return True
    name = type(e).__name__
    if name in ("SafetensorError", "HeaderTooLarge", "TOMLDecodeError"):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(
        s in text for s in ("PytorchStreamReader", "central directory", "invalid load key", "unexpected EOF")
    )


def _path_in_traceback(tb: TracebackType | None, *, existing: bool) -> str | None:
    """The file an error was reading or writing, when a frame it passed through names one in a local
    variable (innermost frame first): an existing file, or (``existing=False``) a path in an existing directory."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in PATH_NAMES:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, Path)) and value and len(str(value)) < 4096:
                try:
                    found = Path(value).is_file() if existing else Path(value).parent.is_dir()
                except (OSError, ValueError):
                    continue
                if found:
                    return short_path(value)
    return None
