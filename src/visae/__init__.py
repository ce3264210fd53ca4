"""visae: sparse autoencoders for vision models — find, test and measure their features."""

__version__ = "0.1.0"

# Lazy top-level API: name -> (module, attribute; None = the module itself). Importing visae stays cheap.
_LAZY: dict[str, tuple[str, str | None]] = {
    "extract": ("visae.extraction", "extract"),
    "ExtractConfig": ("visae.extraction", "ExtractConfig"),
    "Store": ("visae.store", "Store"),
}


def __getattr__(name: str):  # noqa: ANN202
    if name not in _LAZY:
        raise AttributeError(f"module 'visae' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)
