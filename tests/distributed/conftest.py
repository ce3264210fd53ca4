"""Fixtures of the torchrun tests (helpers to import are in dist_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dist_helpers import STOP


@pytest.fixture(scope="session")
def stop_script(tmp_path_factory) -> Path:
    """``python STOP_SCRIPT train ...``: visae, but a rank exits hard at step STOP_AT (dist_helpers.STOP)."""
    f = tmp_path_factory.mktemp("stop") / "stop.py"
    f.write_text(STOP)
    return f
