from __future__ import annotations

from pathlib import Path

import pytest
from extract_fakes import make_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """20 PNGs in two classes, the last one of class b broken."""
    return make_folder(tmp_path_factory.mktemp("data") / "imgs", corrupt=1)
