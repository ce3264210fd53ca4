"""CLI for the classifier stage (filled in by its stage)."""

from visae.cli.app import app  # noqa: F401
