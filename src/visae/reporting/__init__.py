"""Static HTML report of an analysed SAE run: one self-contained file (inline CSS and images)."""

from visae.reporting.build import ReportConfig, report

__all__ = ["ReportConfig", "report"]
