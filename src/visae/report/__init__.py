"""Static HTML report of an analysed SAE run: one self-contained file (inline CSS and images)."""

from visae.report.build import ReportConfig, report

__all__ = ["ReportConfig", "report"]


from visae.api import callable_module as _callable_module  # noqa: E402

_callable_module(__name__)  # visae.report(...) stays the notebook function once this module is imported
