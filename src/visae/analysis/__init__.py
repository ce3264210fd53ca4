"""Feature analysis: one streaming pass over a store into a per-run SQLite feature DB
(statistics, top examples with activation maps, part purity, labels), and heatmaps."""

from visae.analysis.db import DB_NAME, FeatureDB
from visae.analysis.overlays import Overlays
from visae.analysis.run import AnalyzeConfig, analyze, summary

__all__ = ["DB_NAME", "AnalyzeConfig", "FeatureDB", "Overlays", "analyze", "summary"]
