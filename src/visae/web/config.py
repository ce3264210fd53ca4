"""The typed config of ``visae serve``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from visae.config import Config


class ServeConfig(Config):
    """Serve a browser app over analysed SAE runs: feature lists, feature and image pages, steering."""

    runs: list[Path] = Field(min_length=1)
    """The analysed SAE runs to serve (repeat --run); the API names each by its index in this list."""
    host: str = "127.0.0.1"
    """Address to bind: 127.0.0.1 (this machine only) unless you mean to serve others."""
    port: int = Field(8000, ge=1, le=65535)
    """TCP port to listen on."""
    device: str = "auto"
    """Where the steering playground runs the model: auto, cpu or cuda[:N]."""
    max_body: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest request body accepted, in bytes (a larger one is refused with 413)."""
    probe_images: int = Field(1000, ge=10, le=100_000)
    """Store images the steering playground's segmentation probe is trained on (once per run, on first use)."""
