"""``visae eval``: run the metric families on held-out data and write RUN/eval/*.json.

Each family (``FAMILIES``) is a module with ``evaluate(ctx) -> dict``, ``table(result)`` and
``headline(result)``. A family whose input is missing (no masks, no hierarchy, one class...) is
written as ``{"skipped": "..."}`` with a one-line reason, and the others still run.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from visae.atomic import write_json
from visae.errors import VisaeError
from visae.evals.config import EvalConfig
from visae.evals.data import Missing
from visae.lock import locked
from visae.progress import info

FAMILIES = {
    "core": "visae.evals.reconstruction",
    "fidelity": "visae.evals.fidelity",
    "probe": "visae.evals.probing",
    "concepts": "visae.evals.concepts",
    "ood": "visae.evals.ood",
    "ontology": "visae.evals.ontology",
    "stability": "visae.evals.stability",
}
EVAL_DIR = "eval"


def skipped(res: dict[str, Any]) -> str | None:
    """Why a whole suite was skipped (its result is ``{"skipped": "why; what to do"}``), or None when it ran
    (a family may list skipped concepts or encoders under "skipped" as a dict)."""
    why = res.get("skipped")
    return why if isinstance(why, str) else None


def family(suite: str) -> Any:
    return importlib.import_module(FAMILIES[suite])


def evaluate(cfg: EvalConfig) -> dict[str, dict[str, Any]]:
    """Every suite of ``cfg`` for every run; returns {run: summary} (also RUN/eval/summary.json)."""
    from visae.evals.context import open_context

    _check_same_store(cfg.run + ([cfg.compare] if cfg.compare else []), cfg.allow_mismatch)
    options: dict[str, Any] = {"ood_split": cfg.ood_split, "hierarchy": str(cfg.hierarchy) if cfg.hierarchy else None}
    out = {}
    for run in cfg.run:
        t0 = time.perf_counter()
        ctx = open_context(run, cfg.store, max_images=cfg.max_images, device=cfg.device, seed=cfg.seed, options=options)
        if cfg.compare is not None and "stability" in cfg.suite:
            ctx.options["compare"] = open_context(cfg.compare, cfg.compare_store or cfg.store, max_images=cfg.max_images,
                                                  device=cfg.device, seed=cfg.seed)  # fmt: skip
        info(f"[eval] {run}: {ctx.how}")
        results = {suite: run_suite(suite, ctx) for suite in cfg.suite}
        summary = {"run": str(run), "heldout": ctx.how, "images": ctx.heldout.n_images, "tokens": int(len(ctx.heldout.acts_TD)),
                   "suites": {s: ("skipped" if skipped(r) else "done") for s, r in results.items()},
                   "headline": headlines(results), "seconds": round(time.perf_counter() - t0, 1),
                   "config": cfg.model_dump(mode="json")}  # fmt: skip
        folder = Path(ctx.run.path) / EVAL_DIR
        with locked(Path(ctx.run.path)):
            folder.mkdir(exist_ok=True)
            for suite, res in results.items():
                write_json(folder / f"{suite}.json", res)
            write_json(folder / "summary.json", summary)
            if "stability" in results and not skipped(results["stability"]):
                family("stability").plot(results["stability"], folder / "stability.png")
        out[str(run)] = summary | {"results": results}
    return out


def run_suite(suite: str, ctx: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        res = family(suite).evaluate(ctx)
    except Missing as e:
        res = {"skipped": f"{e.message}; {e.hint}" if e.hint else e.message}
    why = skipped(res)
    info(f"[eval] {suite}: {'skipped (' + why + ')' if why else 'done'} in {time.perf_counter() - t0:.1f} s")
    return res | {"seconds": round(time.perf_counter() - t0, 1)}


def headlines(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    rows: dict[str, str] = {}
    for suite, res in results.items():
        if skipped(res):
            rows[suite] = f"skipped: {skipped(res)}"
        else:
            rows.update(family(suite).headline(res))
    return rows


def _check_same_store(runs: list[Path], allow: bool) -> None:
    """Refuse to compare runs trained on different stores (other backbone, layer or data) unless allowed."""
    if len(runs) < 2 or allow:
        return
    from visae.analysis.inputs import read_run

    first = read_run(runs[0])
    for run in runs[1:]:
        other = read_run(run)
        for what, a, b in (("backbone", first.backbone, other.backbone), ("layer", first.layer, other.layer),
                           ("store", str(first.store), str(other.store))):  # fmt: skip
            if a != b:
                raise VisaeError(f"{runs[0]} and {run} were trained on different {what}s ({a} vs {b})",
                                 "pass --allow-mismatch to compare them anyway (e.g. two backbones over the same images)")  # fmt: skip
