"""The extract stage: backbone + layer(s) + images -> activation store(s).

``extract(ExtractConfig(...))`` or ``extract(model=..., layers=[...], data=..., out=...)``;
``visae.extract`` is the same function.
"""

from __future__ import annotations

from typing import Any

from visae.extraction.config import ExtractConfig


def extract(cfg: ExtractConfig | None = None, *, backbone: Any = None, **overrides: Any):  # type: ignore[no-untyped-def]
    """Run the extract stage from a config, keyword settings, or a config plus overrides.

    Returns the Store (one layer) or a dict layer -> Store (several layers).
    """
    from visae.extraction.run import extract as _extract  # torch, on first use only

    if cfg is None:
        cfg = ExtractConfig.build(**overrides)
    elif overrides:
        cfg = ExtractConfig.build(**{**cfg.model_dump(), **overrides})
    return _extract(cfg, backbone=backbone)


__all__ = ["ExtractConfig", "extract"]
