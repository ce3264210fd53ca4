"""The notebook API: one function per CLI command, keyword arguments named like its flags.

``visae.train(store="acts", out="run", arch="topk", k=32)`` is ``visae train --store acts --out run
--arch topk --k 32``: each function only builds the stage's typed config (the single source of names,
defaults and checks) and calls the stage; its errors name keyword arguments (``force=True``), not flags.
A config object works too (``visae.train(cfg)``), and
``config="file.toml"`` reads a file as ``--config`` does (keywords win). A boolean flag's negation
is accepted under the CLI's name: ``no_random_baseline=True`` is ``random_baseline=False``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from visae.config import Config
from visae.errors import VisaeError, did_you_mean, for_python

C = TypeVar("C", bound=Config)
F = TypeVar("F", bound=Callable[..., Any])


def _python_errors(fn: F) -> F:
    """A VisaeError from the stage names keyword arguments, not the CLI's flags (``force=True``, not ``--force``)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VisaeError as e:
            for_python(e)
            raise

    return call  # type: ignore[return-value]


@_python_errors
def extract(cfg: Any = None, *, backbone: Any = None, config: str | Path | None = None, **flags: Any) -> Any:
    """``visae extract``: the Store (one layer) or a dict layer -> Store. ``layer="name"`` or ``layers=[...]``."""
    from visae.extraction import ExtractConfig
    from visae.extraction.run import extract as run

    return run(_config(ExtractConfig, cfg, config, flags), backbone=backbone)


@_python_errors
def train(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> Any:
    """``visae train``: the Run. Per-SAE keywords (arch, k, expansion, d_sae, lr, ...) apply to every SAE,
    as the flags do; several SAEs come from ``[[sae]]`` tables of a ``config`` file or ``saes=[...]``."""
    from visae.sae.sweep import run_keys, sae_keys, train_config
    from visae.sae.train_config import TrainConfig
    from visae.sae.trainer import train as run

    if isinstance(cfg, TrainConfig):
        return run(_config(TrainConfig, cfg, config, flags))
    flags = _flags(TrainConfig, _positional(cfg, config, flags), known=run_keys() | sae_keys() | {"saes"})
    if "saes" in flags:  # explicit SAE list: no flat per-SAE keywords to merge
        return run(_config(TrainConfig, None, flags.pop("config", None), flags))
    path = flags.pop("config", None)
    per_sae = {k: v for k, v in flags.items() if k in sae_keys()}
    return run(train_config(path, {k: v for k, v in flags.items() if k not in per_sae}, per_sae))


@_python_errors
def analyze(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> Path:
    """``visae analyze``: the path of the feature DB (``visae.summary(path)`` reads its headline numbers)."""
    from visae.analysis import AnalyzeConfig
    from visae.analysis import analyze as run

    return run(_config(AnalyzeConfig, cfg, config, flags))


@_python_errors
def report(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> Path:
    """``visae report``: the path of the HTML file."""
    from visae.reporting import ReportConfig
    from visae.reporting import report as run

    return run(_config(ReportConfig, cfg, config, flags))


@_python_errors
def demo(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> dict[str, Any]:
    """``visae demo``: the summary the command prints, as a dict."""
    from visae.reference_study import DemoConfig
    from visae.reference_study import demo as run

    return run(_config(DemoConfig, cfg, config, flags))


@_python_errors
def steer(cfg: Any = None, *, config: str | Path | None = None, steerer: Any = None, **flags: Any) -> dict[str, Any]:
    """``visae steer``: per image the top classes before and after, margins, flip, KL and the heatmap paths.
    ``set="-2x"`` is -2 times the latent's max activation; pass ``steerer=visae.Steerer.open(run)`` to reuse a loaded model."""
    from visae.steering.command import steer as run
    from visae.steering.config import SteerConfig

    return run(_config(SteerConfig, cfg, config, _listed(flags, "image", "latent", "where")), steerer)


@_python_errors
def ablate(cfg: Any = None, *, config: str | Path | None = None, steerer: Any = None, **flags: Any) -> dict[str, Any]:
    """``visae ablate``: the latent's ablation against random cells (effects, own-activation drop, per image)."""
    from visae.steering.command import ablate as run
    from visae.steering.config import AblateConfig

    return run(_config(AblateConfig, cfg, config, _listed(flags, "images")), steerer)


@_python_errors
def steer_eval(cfg: Any = None, *, config: str | Path | None = None, steerer: Any = None, **flags: Any) -> dict[str, Any]:
    """``visae steer-eval``: the summary (RUN/steer/summary.json); the tables are in RUN/steer/*.json."""
    from visae.steering.config import SteerEvalConfig
    from visae.steering.evaluate import steer_eval as run

    if isinstance(flags.get("latents"), (list, tuple)):
        flags["latents"] = ",".join(str(i) for i in flags["latents"])
    return run(_config(SteerEvalConfig, cfg, config, flags), steerer)


@_python_errors
def eval(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> dict[str, Any]:  # noqa: A001
    """``visae eval``: {run: summary with "results" per suite}; the suites' JSON is also in RUN/eval/."""
    from visae.evals.config import EvalConfig
    from visae.evals.run import evaluate as run

    return run(_config(EvalConfig, cfg, config, _listed(flags, "run", "suite")))


@_python_errors
def eval_frontier(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> dict[str, Any]:
    """``visae eval frontier``: {"points": [...], "plot": path or None}."""
    from visae.evals.config import FrontierConfig
    from visae.evals.frontier import frontier as run

    return run(_config(FrontierConfig, cfg, config, _listed(flags, "run")))


@_python_errors
def serve(cfg: Any = None, *, config: str | Path | None = None, **flags: Any) -> None:
    """``visae serve``: the viewer's web server, until interrupted (``visae.web.app.create_app`` gives the app itself)."""
    from visae.web.config import ServeConfig
    from visae.web.serve import serve as run

    if "run" in flags:  # the flag is --run, the field runs
        flags["runs"] = flags.pop("run")
    run(_config(ServeConfig, cfg, config, _listed(flags, "runs")))


def _listed(flags: dict[str, Any], *names: str) -> dict[str, Any]:
    """A single value given for a repeatable flag becomes a one-item list (``image="train/000001"``)."""
    return {k: ([v] if k in names and isinstance(v, (str, int, Path)) else v) for k, v in flags.items()}


def _config(cls: type[C], cfg: Any, config: str | Path | None, flags: dict[str, Any]) -> C:
    """``cfg`` (a ``cls``) with ``flags`` applied, or ``cls`` from a TOML file and/or ``flags``."""
    if isinstance(cfg, cls):
        if config is not None:
            raise VisaeError(f"both a {cls.__name__} and config={config!r} are given", "pass one of them")
        if not flags:
            return cfg
        flags = _flags(cls, flags)
        base = {k: v for k, v in cfg.model_dump().items() if not (k == "layers" and "layer" in flags)}
        return cfg.build(**{**base, **flags})
    flags = _flags(cls, _positional(cfg, config, flags))
    path = flags.pop("config", None)
    return cls.from_toml(path, **flags) if path is not None else cls.build(**flags)


def _positional(cfg: Any, config: str | Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The keywords, with a TOML path given positionally or as ``config=`` under ``config``."""
    if cfg is not None and not isinstance(cfg, (str, Path)):
        raise VisaeError(f"expected a config object or a TOML path, got {type(cfg).__name__}", "pass keywords named like the CLI flags")
    if cfg is not None and config is not None:
        raise VisaeError("a TOML path is given twice (positionally and as config=)", "pass one of them")
    path = cfg if cfg is not None else config
    return {**flags, "config": path} if path is not None else dict(flags)


def _flags(cls: type[Config], flags: dict[str, Any], known: set[str] | None = None) -> dict[str, Any]:
    """``flags`` with CLI negations (``no_x=True``) turned into fields (``x=False``); unknown names refused."""
    if known is None:
        known = set(cls.model_fields) | ({"layer"} if "layers" in cls.model_fields else set())
    out: dict[str, Any] = {}
    for key, value in flags.items():
        field = key.removeprefix("no_")
        if key not in known and key != "config" and key.startswith("no_") and field in known:
            out[field] = None if value is None else not value
        elif key in known or key == "config":
            out[key] = value
        else:
            hint = did_you_mean(key, known)
            raise VisaeError(f"unknown setting '{key}' for {cls.__name__}", hint or f"known: {', '.join(sorted(known))}")
    return out
