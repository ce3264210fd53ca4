"""visae: sparse autoencoders for vision models — find, test and measure their features."""

__version__ = "0.1.0"

# Lazy top-level API: name -> (module, attribute; None = the module itself). Importing visae stays cheap.
_LAZY: dict[str, tuple[str, str | None]] = {
    # one function per CLI command, keyword arguments named like its flags (visae.api)
    "extract": ("visae.api", "extract"),
    "train": ("visae.api", "train"),
    "analyze": ("visae.api", "analyze"),
    "report": ("visae.api", "report"),
    "demo": ("visae.api", "demo"),
    "steer": ("visae.api", "steer"),
    "ablate": ("visae.api", "ablate"),
    "steer_eval": ("visae.api", "steer_eval"),
    "eval": ("visae.api", "eval"),
    "eval_frontier": ("visae.api", "eval_frontier"),
    "serve": ("visae.api", "serve"),
    # interventions: the splice, edits, a run opened for them
    "Splice": ("visae.steering.splice", "Splice"),
    "Edit": ("visae.steering.edit", "Edit"),
    "LatentOp": ("visae.steering.edit", "LatentOp"),
    "Steerer": ("visae.steering.session", "Steerer"),
    # images -> latent maps; the artifacts
    "encode_images": ("visae.encode", "encode_images"),
    "LatentMaps": ("visae.encode", "LatentMaps"),
    "load_sae": ("visae.sae.importers", "load_sae"),
    "FeatureDB": ("visae.analysis", "FeatureDB"),
    "summary": ("visae.analysis", "summary"),
    "Store": ("visae.store", "Store"),
    "Run": ("visae.sae.trainer", "Run"),
    # the typed configs: the single source of every setting's name, default and help
    "ExtractConfig": ("visae.extraction", "ExtractConfig"),
    "TrainConfig": ("visae.sae.train_config", "TrainConfig"),
    "SAEHparams": ("visae.sae.train_config", "SAEHparams"),
    "AnalyzeConfig": ("visae.analysis", "AnalyzeConfig"),
    "ReportConfig": ("visae.reporting", "ReportConfig"),
    "DemoConfig": ("visae.reference_study", "DemoConfig"),
    "SteerConfig": ("visae.steering.config", "SteerConfig"),
    "AblateConfig": ("visae.steering.config", "AblateConfig"),
    "SteerEvalConfig": ("visae.steering.config", "SteerEvalConfig"),
    "EvalConfig": ("visae.evals.config", "EvalConfig"),
    "FrontierConfig": ("visae.evals.config", "FrontierConfig"),
    "ServeConfig": ("visae.web.config", "ServeConfig"),
}
__all__ = sorted(_LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str):  # noqa: ANN202
    if name not in _LAZY:
        raise AttributeError(f"module 'visae' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)
