"""An edit is data: which latents, which operation, which tokens; several compose in order.

``Edit(ops=[LatentOp(latents=[3], op="zero"), LatentOp(latents=[7], op="steer", value=2.0, where="cls")])``
serialises to JSON (``edit.model_dump_json()``) and back (``Edit.model_validate_json``) exactly,
so the same edit can be applied, logged, replayed and served. ``visae.steering.splice`` applies it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from visae.config import Config

Operation = Literal["set", "scale", "clamp", "zero", "add", "steer"]
Where = Literal["all", "active", "cells", "cls", "mask"]

NEEDS_VALUE = frozenset({"set", "scale", "add", "steer"})


class LatentOp(Config):
    """One operation on some latents at some tokens."""

    latents: list[int] = Field(min_length=1)
    """Indices of the SAE latents to edit (0 .. d_sae - 1)."""
    op: Operation
    """What to do to each latent's activation a: set (a := value), scale (a := value * a),
    clamp (a := min(max(a, low), high)), zero (a := 0), add (a := a + value), or steer
    (leave a alone and add value * the latent's unit decoder direction to the layer output)."""
    value: float | None = None
    """The operand of set, scale, add and steer (steer: a norm in the layer's activation units)."""
    low: float | None = None
    """clamp: the lower bound (None: no lower bound)."""
    high: float | None = None
    """clamp: the upper bound (None: no upper bound)."""
    where: Where = "all"
    """Which tokens: all (every patch token, every cell of a map), active (the patch tokens where
    the latent fires on the unedited input), cells (the grid cells in ``cells``), cls (the CLS
    token), mask (the grid cells where ``mask`` is true). Register tokens are never edited."""
    cells: list[tuple[int, int]] | None = None
    """where=cells: the (y, x) grid cells to edit."""
    mask: list[list[bool]] | None = None
    """where=mask: an (H, W) boolean mask over the layer's grid."""

    @model_validator(mode="after")
    def _check(self) -> "LatentOp":
        if any(i < 0 for i in self.latents):
            raise ValueError(f"latent indices must be >= 0, got {self.latents}")
        if self.op in NEEDS_VALUE and self.value is None:
            raise ValueError(f"operation '{self.op}' needs a value")
        if self.op not in NEEDS_VALUE and self.value is not None:
            raise ValueError(f"operation '{self.op}' takes no value")
        if self.op == "clamp" and self.low is None and self.high is None:
            raise ValueError("clamp needs low, high or both")
        if self.op != "clamp" and (self.low is not None or self.high is not None):
            raise ValueError(f"low/high are for clamp, not '{self.op}'")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"clamp low={self.low} is above high={self.high}")
        if (self.where == "cells") != (self.cells is not None):
            raise ValueError("cells goes with where='cells' (and only with it)")
        if (self.where == "mask") != (self.mask is not None):
            raise ValueError("mask goes with where='mask' (and only with it)")
        return self


class Edit(Config):
    """Operations applied in order to the SAE codes of one layer; no operations: the model unchanged."""

    ops: list[LatentOp] = []
    """The operations, applied one after the other."""

    def latents(self) -> list[int]:
        """Every latent some operation names, sorted, without repeats."""
        return sorted({i for op in self.ops for i in op.latents})
