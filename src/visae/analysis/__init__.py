"""Feature analysis: one streaming pass over a store into a per-run SQLite feature DB
(statistics, top examples with activation maps, part purity, labels), and heatmaps.
Names load on first use (``AnalyzeConfig`` needs no torch)."""

from __future__ import annotations

from visae.registry import lazy_names

_WHERE = {"DB_NAME": "visae.analysis.db", "FeatureDB": "visae.analysis.db", "Overlays": "visae.analysis.overlays",
          "AnalyzeConfig": "visae.analysis.config", "analyze": "visae.analysis.run", "summary": "visae.analysis.run"}  # fmt: skip
__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
