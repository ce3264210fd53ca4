"""The report tests reuse the planted fixtures of tests/analysis."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from analysis_fixtures import planted  # noqa: E402,F401
