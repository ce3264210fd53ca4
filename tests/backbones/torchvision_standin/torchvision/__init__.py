"""Tests-only torchvision stand-in (see ../README.md); never installed or shipped."""

__version__ = "0.0.0+visae-tests-standin"

from torchvision import datasets, ops, transforms  # noqa: E402,F401
