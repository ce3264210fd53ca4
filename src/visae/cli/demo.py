"""CLI of the demo: ``visae demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from visae.cli.app import app
from visae.cli.options import build, option
from visae.reference_study import DemoConfig as D


@app.command()
def demo(
    out: Optional[Path] = option(D, "out"),
    quick: Optional[bool] = option(D, "quick"),
    force: Optional[bool] = option(D, "force"),
    seed: Optional[int] = option(D, "seed"),
    serve: Optional[bool] = option(D, "serve"),
    port: Optional[int] = option(D, "port"),
) -> None:
    """Run the reference study end to end on the embedded default.

    Renders the procedural aircraft dataset, trains a small ConvNeXt classifier from
    scratch, extracts the spatial activations of its final stage, trains a TopK SAE on
    them, analyses its features, tests the most selective ones causally (steer-eval), evaluates
    the SAE against its baselines on the val split (eval) and writes a static HTML report.
    Finished steps are reused when you run it again; --serve then opens the web viewer.

    Example: visae demo --out runs/demo
    """
    flags = dict(locals())
    from visae.reference_study import demo as run

    cfg = build(D, None, **flags)
    if cfg.serve:  # refuse a missing web extra or a taken port before the long steps
        from visae.web.serve import check_port, require_web

        require_web()
        check_port("127.0.0.1", cfg.port)
    summary = run(cfg)
    table = Table(title="visae demo", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)
    if cfg.serve:
        from visae.reference_study import serve_demo

        serve_demo(cfg)
