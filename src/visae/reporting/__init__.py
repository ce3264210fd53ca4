"""Static HTML report of an analysed SAE run: one self-contained file (inline CSS and images).
Names load on first use (``ReportConfig`` needs no torch)."""

from __future__ import annotations

from visae.registry import lazy_names

_WHERE = {"ReportConfig": "visae.reporting.config", "report": "visae.reporting.build"}
__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
