"""Shared by the web tests (a module of its own: ``from conftest import`` depends on which conftest was imported first)."""

from __future__ import annotations

from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (files, folders, links) with its size and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out
