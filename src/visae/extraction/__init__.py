"""The extract stage: ``extract(ExtractConfig(...))`` or ``extract(model=..., layers=[...], data=..., out=...)``.

The package itself is callable, so ``visae.extract(...)`` works as well as
``visae.extract.extract(...)``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from visae.extract.config import ExtractConfig
from visae.extract.run import extract as _extract


def extract(cfg: ExtractConfig | None = None, *, backbone: Any = None, **overrides: Any):  # type: ignore[no-untyped-def]
    """Run the extract stage from a config, keyword settings, or a config plus overrides.

    Returns the Store (one layer) or a dict layer -> Store (several layers).
    """
    if cfg is None:
        cfg = ExtractConfig.build(**overrides)
    elif overrides:
        cfg = ExtractConfig.build(**{**cfg.model_dump(), **overrides})
    return _extract(cfg, backbone=backbone)


class _CallableModule(types.ModuleType):
    def __call__(self, cfg: ExtractConfig | None = None, **kw: Any):  # type: ignore[no-untyped-def]
        return extract(cfg, **kw)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["ExtractConfig", "extract"]
