"""Fixtures for the SAE tests: a planted sparse dictionary and small in-memory sources."""

from __future__ import annotations

import os

import pytest
import torch

from visae.sae.source import TensorSource

from sae_fixtures import planted

torch.set_num_threads(1)  # tiny tensors: thread hand-offs cost more than they save
os.environ.setdefault("VISAE_QUIET", "1")


@pytest.fixture
def planted_source():
    """64 atoms in D=32 (2x overcomplete): an SAE of 128 latents recovers them in a few hundred steps."""
    x_ND, atoms_SD = planted(s=64)
    return TensorSource(x_ND, meta={"backbone": "toy", "layer": "blocks.1", "layout": {"kind": "vit"}}), atoms_SD


@pytest.fixture
def small_source():
    g = torch.Generator().manual_seed(1)
    return TensorSource(torch.randn(2048, 16, generator=g) * 2 + 1)
