"""Artifact directories: every stage's output carries a ``visae.json`` marker.

The marker says what kind of artifact the directory holds, so a stage can refuse to
write over somebody else's work, resume its own, or tell a user that a path given to
``--run`` is in fact a store.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from visae import __version__
from visae.atomic import write_json
from visae.errors import VisaeError

MARKER = "visae.json"


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The directory's marker, or None when it has none."""
    f = Path(path) / MARKER
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        raise VisaeError(f"{f} is corrupt", "delete the directory or rerun with --force") from None


def prepare_out(path: str | Path, kind: str, *, force: bool = False, resume: bool = False) -> Path:
    """Make ``path`` ready to receive an artifact of ``kind``.

    An empty or missing directory is fine. A directory holding the same kind is refused
    unless ``resume`` (keep it) or ``force`` (wipe it). Anything else is only replaced
    with ``force``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VisaeError(f"{path} is a file, not a directory", "choose another --out")
    if path.is_dir() and any(path.iterdir()):
        marker = read_marker(path)
        found = marker.get("kind") if marker else None
        if resume and found == kind:
            return path
        if not force:
            what = f"a visae {found}" if found else "other files"
            hint = "pass --force to replace it" + (" or --resume to continue it" if found == kind else "")
            raise VisaeError(f"{path} already holds {what}", hint)
        if marker is None and not _looks_disposable(path):
            raise VisaeError(
                f"{path} holds files that visae did not write; refusing to delete them even with --force",
                "choose another --out",
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _looks_disposable(path: Path) -> bool:
    """A non-visae directory is only wiped when it holds nothing but partial visae output."""
    return all(p.name.startswith(".") and p.name.endswith(".tmp") for p in path.iterdir())


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
        raise VisaeError(f"{flag} {path}: no such directory")
    marker = read_marker(path)
    if marker is None:
        raise VisaeError(f"{flag} {path} is not a visae {kind} (no {MARKER})", f"create one first")
    if marker.get("kind") != kind:
        raise VisaeError(f"{flag} {path} is a visae {marker.get('kind')}, not a {kind}")
    return marker
