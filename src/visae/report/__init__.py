"""Static HTML report of an analysed SAE run: one self-contained file (inline CSS and images)."""

from visae.report.build import ReportConfig, report

__all__ = ["ReportConfig", "report"]
