"""Fixtures of the analysis tests (they live in analysis_fixtures.py, shared with tests/report)."""

from analysis_fixtures import planted  # noqa: F401
