"""CLI of the demo: ``visae demo``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from visae.cli.app import app


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Directory for every step's output."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes everywhere: about a minute on 2 cores."),
    force: bool = typer.Option(False, "--force", help="Start over instead of reusing finished steps."),
    seed: int = typer.Option(0, "--seed", help="Seed of every step."),
) -> None:
    """Run the reference study end to end on the embedded default.

    Renders the procedural aircraft dataset, trains a small ConvNeXt classifier from
    scratch, extracts the spatial activations of its final stage, trains a TopK SAE on
    them, analyses its features and writes a static HTML report. Finished steps are
    reused when you run it again.

    Example: visae demo --out runs/demo
    """
    from visae.demo import DemoConfig
    from visae.demo import demo as run

    summary = run(DemoConfig.build(out=out, quick=quick, force=force, seed=seed))
    table = Table(title="visae demo", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)
