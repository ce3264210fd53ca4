"""CLI of the activation store: ``visae store verify DIR`` and ``visae store info DIR``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from visae.cli.app import subcommand

group = subcommand(
    "store",
    help="Inspect and check activation stores written by `visae extract`.",
)


@group.command("verify")
def verify(path: Path = typer.Argument(..., help="Store directory.")) -> None:
    """Re-hash every shard and check shapes, counts and the token index.

    Exits 1 when the store is damaged or unfinished, saying what to do.
    """
    from visae.store.verify import verify as run

    report = run(path)
    if report.ok:
        m = report.meta
        print(f"ok: {path}: {report.shards_checked} shards, {m.n_tokens} tokens, {m.n_images} images, checksums match")
        return
    table = Table("problem", "file", "detail", title=f"{path}: {len(report.problems)} problem(s)")
    for p in report.problems:
        table.add_row(p.kind, p.where, p.detail)
    Console().print(table)
    print(f"bad: {report.hint()}")
    raise typer.Exit(1)


@group.command("info")
def info(path: Path = typer.Argument(..., help="Store directory.")) -> None:
    """Summarise a store: backbone, layer, token layout, size, statistics, progress."""
    from visae.backbones.check import describe_check
    from visae.store.reader import Store

    store = Store(path, allow_partial=True)
    m = store.meta
    layout = m.layout
    grid = "x".join(map(str, layout["grid"])) if layout.get("grid") else "-"
    on_disk = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    rows = [
        ("backbone", m.backbone + (" (random init)" if m.random_init else "")),
        *([("weights", describe_check(m.weights_check))] if m.position_match else []),
        ("layer", m.layer),
        ("layout", f"{layout['kind']}, grid {grid}, cls {layout.get('n_cls', 0)}, registers {layout.get('n_registers', 0)}"),
        ("tokens kept", m.tokens),
        ("data", f"{m.dataset} [{m.split}]"),
        ("tokens x d", f"{m.n_tokens:,} x {m.d} ({m.dtype})"),
        ("images", f"{m.n_images:,} of {m.planned_images:,}" + (f", {len(m.skipped)} skipped" if m.skipped else "")),
        ("shards", f"{len(m.shards)} x {m.shard_tokens:,} tokens, {on_disk / 2**20:,.1f} MiB on disk, {m.checksum}"),
        ("complete", "yes" if m.complete else "no (resume with `visae extract ... --resume`)"),
    ]
    if m.stats.n:
        rows.append(("stats", f"E|x - mean|^2 = {store.mean_sq_norm:.4g}, |mean| = {float(store.mean_D.norm()):.4g}, scale = {store.scale:.4g}"))
    rows.append(("format", f"version {m.format_version}"))
    table = Table(show_header=False, title=str(path))
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
