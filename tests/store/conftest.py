"""Fixtures of the store tests (helpers live in store_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from store_helpers import write_store


@pytest.fixture
def small_store(tmp_path: Path):
    """A complete fp32 store: 13 images x 6 tokens x d=5 in shards of 16 tokens (last one partial)."""
    g = torch.Generator().manual_seed(0)
    acts = [torch.randn(6, 5, generator=g) * 3 + 1 for _ in range(13)]
    write_store(tmp_path / "s", acts, shard_tokens=16)
    return tmp_path / "s", torch.cat(acts)
