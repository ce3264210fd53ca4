"""CLI of the evaluation stage: ``visae eval`` and ``visae eval frontier``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from visae.cli.app import app
from visae.cli.options import build, option
from visae.evals.config import EvalConfig as E
from visae.evals.config import FrontierConfig as F

eval_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, pretty_exceptions_enable=False,
                       rich_markup_mode="rich")  # fmt: skip
app.add_typer(eval_app, name="eval")


@eval_app.callback()
def eval_cmd(
    ctx: typer.Context,
    run: Optional[list[Path]] = option(E, "run"),
    store: Optional[Path] = option(E, "store"),
    suite: Optional[list[str]] = option(E, "suite"),
    compare: Optional[Path] = option(E, "compare"),
    compare_store: Optional[Path] = option(E, "compare_store"),
    max_images: Optional[int] = option(E, "max_images"),
    ood_split: Optional[str] = option(E, "ood_split"),
    hierarchy: Optional[Path] = option(E, "hierarchy"),
    allow_mismatch: Optional[bool] = option(E, "allow_mismatch"),
    seed: Optional[int] = option(E, "seed"),
    device: Optional[str] = option(E, "device"),
) -> None:
    """Evaluate SAE runs on held-out data: every number defined, each next to its baselines.

    Suites: core (reconstruction: MSE, NMSE, explained variance, cosine, L0, L1, dead/dense, relative bias), fidelity (the model with the reconstruction spliced in: accuracy, cross-entropy, KL, loss recovered vs zero- and mean-ablation), probe (sparse probing of classes and generating factors vs raw channels), concepts (concept recovery: mAP, Coverage@0.3, Purity@16 vs PCA, k-means, a random-init SAE and the raw channels), ood (out-of-distribution detection vs max softmax, energy, Mahalanobis, k-NN), ontology (does the SAE recover the class tree), stability (--compare: another seed, backbone or layer). Held-out data: --store (another split extracted with the same model and layer), else the images the trainer kept out of training. Writes RUN/eval/*.json and prints a table per suite; a suite whose input is missing says what is missing and the others run. `visae eval frontier RUN ...` draws the L0-NMSE frontier. Definitions: docs/metrics.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    flags = {k: v for k, v in locals().items() if k != "ctx"}
    from visae.evals.run import evaluate, family, skipped

    results = evaluate(build(E, None, **flags))
    for run, res in results.items():
        print(f"\n== {run}: {res['images']} held-out images, {res['tokens']:,} tokens ({res['heldout']})")
        for suite, r in res["results"].items():
            if skipped(r):
                print(f"\n[{suite}] skipped: {skipped(r)}")
                continue
            head, rows = family(suite).table(r)
            print(f"\n[{suite}] ({r['seconds']:.0f} s)")
            _print_table(head, rows)
        print()
        for what, line in res["headline"].items():
            print(f"{what}: {line}")
        print(f"wrote {Path(run) / 'eval'}/ in {res['seconds']:.0f} s")


def _print_table(head: list[str], rows: list[list[Any]]) -> None:
    cols = [head, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cols) for i in range(len(head))]
    for r in cols:
        print("  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


@eval_app.command("frontier")
def frontier_cmd(
    run: list[Path] = typer.Argument(..., help="Runs or sweep directories; every SAE they hold is a point."),
    out: Optional[Path] = option(F, "out"),
    x: Optional[str] = option(F, "x"),
) -> None:
    """Draw the L0-NMSE frontier (held-out numbers) across runs or the SAEs of a sweep, as a PNG and a table."""
    from visae.evals.frontier import frontier

    res = frontier(build(F, None, run=run, out=out, x=x))
    _print_table(["SAE", "arch", "width", "k", "held-out L0", "held-out NMSE", "on the frontier"],
                 [[p["name"], p["arch"], p["d_sae"], p["k"] if p["k"] is not None else "–", f"{p['l0']:.2f}", f"{p['nmse']:.4f}",
                   "yes" if p["frontier"] else ""] for p in res["points"]])  # fmt: skip
    if res.get("plot"):
        print(f"wrote {res['plot']}")
