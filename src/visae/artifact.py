"""Artifact directories: every stage's output carries a ``visae.json`` marker.

The marker says what kind of artifact the directory holds, so a stage can refuse to
write over somebody else's work, resume its own, or tell a user that a path given to
``--run`` is in fact a store. A stage prepares its directory while holding the
directory's lock (``visae.lock.locked``), so ``--force`` never wipes what another live
process is writing; the lock file itself survives the wipe.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from visae import __version__
from visae.atomic import TEMPORARY, remove_temporaries, write_json
from visae.errors import VisaeError
from visae.lock import LOCK_NAME, holds, locked

MARKER = "visae.json"

UNRESUMABLE = frozenset({"sae-export", "synth-aircraft"})
"""Kinds whose command has no --resume (``visae export``, ``visae data synth-aircraft``): they are
written again from scratch, so ``prepare_out``'s refusal only suggests --force."""


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The directory's marker, or None when it has none."""
    f = Path(path) / MARKER
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        raise VisaeError(f"{f} is corrupt", "delete the directory or rerun with --force") from None


def prepare_out(
    path: str | Path, kind: str, *, force: bool = False, resume: bool = False, resumable: bool | None = None
) -> Path:
    """Make ``path`` ready to receive an artifact of ``kind``.

    An empty or missing directory is fine. A directory holding the same kind is refused
    unless ``resume`` (keep it) or ``force`` (wipe it). Anything else is only replaced
    with ``force``. The caller holds the directory's lock (``with locked(path):``).
    ``resumable``: whether the calling command has --resume, so that the refusal may suggest
    it (None: unless ``kind`` is in ``UNRESUMABLE``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VisaeError(f"{path} is a file, not a directory", "choose another --out")
    if not holds(path):
        raise RuntimeError(f"prepare_out({path}) without its lock: wrap the stage in `with visae.lock.locked(out):`")
    if path.is_dir() and any(p.name != LOCK_NAME for p in path.iterdir()):
        marker = read_marker(path)
        found = marker.get("kind") if marker else None
        if resume and found == kind:
            remove_leftovers(path)
            return path
        if not force:
            what = f"a visae {found}" if found else "other files"
            if resumable is None:
                resumable = kind not in UNRESUMABLE
            can_resume = found == kind and resumable
            hint = "pass --force to replace it" + (" or --resume to continue it" if can_resume else "")
            raise VisaeError(f"{path} already holds {what}", hint)
        if marker is None and not _looks_disposable(path):
            raise VisaeError(
                f"{path} holds files that visae did not write; refusing to delete them even with --force",
                "choose another --out",
            )
        clear(path)
    path.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    return path


def remove_leftovers(path: str | Path) -> None:
    """Delete the temporary files of atomic writes that a killed writer left in ``path`` and its
    subfolders, but not in a subfolder with a lock file (a live writer may be using it; its own stage
    cleans it). Only for a directory the caller owns (a visae artifact) and holds the lock of."""
    if not holds(path):
        raise RuntimeError(f"remove_leftovers({path}) without its lock")
    remove_temporaries(path, skip=lambda d: (d / LOCK_NAME).exists())


def clear(path: str | Path) -> None:
    """Delete everything in ``path`` but its lock file (the caller holds the lock). Subfolders with a
    lock of their own are locked first, before anything is deleted: a live writer in one refuses the
    whole wipe (with its PID) instead of losing its files."""
    path = Path(path)
    if not holds(path):
        raise RuntimeError(f"clear({path}) without its lock")
    with ExitStack() as held:
        for d in _locked_folders(path):
            held.enter_context(locked(d))
        for p in path.iterdir():
            if p.name == LOCK_NAME:
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _locked_folders(path: Path) -> list[Path]:
    found = []
    for e in os.scandir(path):
        if e.is_dir(follow_symlinks=False):
            sub = Path(e.path)
            found += ([sub] if (sub / LOCK_NAME).exists() else []) + _locked_folders(sub)
    return found


def _looks_disposable(path: Path) -> bool:
    """A non-visae directory is only wiped when it holds nothing but partial visae output."""
    return all(p.name == LOCK_NAME or TEMPORARY.match(p.name) for p in path.iterdir())


def write_marker(path: str | Path, kind: str, **extra: Any) -> None:
    write_json(
        Path(path) / MARKER,
        {
            "kind": kind,
            "visae_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        },
    )


def require(path: str | Path, kind: str, flag: str) -> dict[str, Any]:
    """The marker of an artifact of ``kind`` at ``path``, or a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise VisaeError(f"{flag} {path}: no such directory", "check the path")
    marker = read_marker(path)
    if marker is None:
        raise VisaeError(f"{flag} {path} is not a visae {kind} (no {MARKER})", f"pass a directory visae wrote as a {kind}")
    if marker.get("kind") != kind:
        raise VisaeError(f"{flag} {path} is a visae {marker.get('kind')}, not a {kind}", f"pass a visae {kind} to {flag}")
    return marker
