"""Static HTML report of an analysed SAE run: one self-contained file (inline CSS and images).
Names load on first use (``ReportConfig`` needs no torch)."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"ReportConfig": "visae.reporting.config", "report": "visae.reporting.build"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'visae.reporting' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
