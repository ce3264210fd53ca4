"""ExtractConfig: what ``visae extract`` needs to turn images into an activation store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from visae.config import Config
from visae.errors import VisaeError
from visae.registry import absolute_spec


class ExtractConfig(Config):
    """Run a backbone over a dataset split and store the tokens of one or more layers."""

    model: str
    """Backbone spec: hf:REPO_OR_PATH, timm:NAME[:CHECKPOINT], ... (see `visae layers`)."""
    layers: list[str] = Field(min_length=1)
    """Layer names as `visae layers MODEL` lists them; several layers share one forward pass."""
    data: str
    """Image source spec: folder:PATH, synth-aircraft:PATH, fgvc-aircraft:PATH, hf:NAME, mnist5k."""
    out: Path
    """The store directory to write (several layers: one store in a sub-directory each, named after the layer)."""
    split: str | None = None
    """Dataset split to extract (default: the dataset's training split)."""
    tokens: Literal["patch", "cls", "registers", "all"] = "patch"
    """Which tokens to keep: patch (grid cells / patch tokens / pooled vector), cls, registers or all."""
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    """Storage precision of the activations (bf16 keeps fp32's range at half the bytes)."""
    batch_size: int = Field(64, ge=1)
    """Images per forward pass."""
    shard_tokens: int | None = Field(None, ge=1)
    """Tokens per shard file (default: a power of two near 128 MiB per shard)."""
    max_images: int | None = Field(None, ge=1)
    """Extract a seeded random subset of N images of the split (kept in split order)."""
    seed: int = 0
    """Seed of the --max-images subset."""
    random_init: bool = False
    """Build the backbone with random weights (architecture from its config) instead of loading weights."""
    allow_position_match: bool = False
    """Load a checkpoint whose tensor names differ from the model's by position (refused otherwise); the
    loaded classifier is then checked on the labelled images being extracted, and the store records it."""
    resume: bool = False
    """Continue an interrupted extraction in --out (also automatic when --out holds the same config)."""
    force: bool = False
    """Replace whatever --out holds."""
    workers: int = Field(0, ge=0)
    """Image-decoding worker processes (0: decode in the main process)."""
    device: str = "auto"
    """Where the backbone runs: auto (the GPU when torch sees one, else the CPU), cpu, or cuda[:N]. On a GPU the
    forward runs under bf16 autocast (the store's dtype is --dtype either way). Not part of the resume check:
    a store begun on one device can be finished on another."""
    skip_nonfinite: bool = False
    """Drop images whose activations are NaN/Inf (recorded in the metadata) instead of stopping."""

    @model_validator(mode="before")
    @classmethod
    def _layer_alias(cls, values: Any) -> Any:
        """``layer="name"`` (the CLI's ``--layer``, a TOML ``layer`` key) is ``layers=["name"]``."""
        if not isinstance(values, dict) or "layer" not in values:
            return values
        values = dict(values)
        layer = values.pop("layer")
        if values.get("layers") is not None:
            raise VisaeError("both 'layer' and 'layers' are given", "pass one of them (layers=[...] for several)")
        values["layers"] = [layer] if isinstance(layer, str) else layer
        return values

    @field_validator("model", "data")
    @classmethod
    def _absolute(cls, spec: str) -> str:
        """A local path is recorded absolute in the store, whose later readers may run anywhere."""
        return absolute_spec(spec)

    @model_validator(mode="after")
    def _check(self) -> "ExtractConfig":
        if self.resume and self.force:
            raise VisaeError("--resume and --force contradict each other", "pass one of them")
        if len(set(self.layers)) != len(self.layers):
            raise VisaeError("a layer is named twice in --layer", "name each layer once")
        return self


def auto_shard_tokens(d: int, itemsize: int, target_bytes: int = 128 << 20) -> int:
    """The power of two of tokens whose shard is closest below ``target_bytes`` (at least 1024)."""
    n = max(1, target_bytes // (d * itemsize))
    return max(1024, 1 << (n.bit_length() - 1))
