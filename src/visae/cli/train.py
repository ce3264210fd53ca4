"""CLI for the train stage: ``visae train`` and ``visae export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from visae.cli.app import app


@app.command("train")
def train_cmd(
    store: Optional[str] = typer.Option(None, "--store", help="Activation store directory (from visae extract)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run directory to write."),
    arch: Optional[str] = typer.Option(None, help="relu | topk | batchtopk | jumprelu | matryoshka (default topk)."),
    k: Optional[int] = typer.Option(None, help="Active latents per token for top-k families (default 32)."),
    expansion: Optional[int] = typer.Option(None, help="Width as a multiple of the store's d (default 16)."),
    d_sae: Optional[int] = typer.Option(None, "--d-sae", help="Explicit number of latents (overrides --expansion)."),
    tokens: Optional[int] = typer.Option(None, help="Training tokens (default: one pass over the store)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Tokens per step (default 4096)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default 2e-4*sqrt(16384/d_sae))."),
    sparsity_coeff: Optional[float] = typer.Option(None, "--sparsity-coeff", help="L1 (relu) / L0 (jumprelu) weight."),
    seed: Optional[int] = typer.Option(None, help="Seed for init and data order (default 0)."),
    dtype: Optional[str] = typer.Option(None, help="fp32 | bf16 (bf16 autocast for the encoder; default fp32)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda[:i] (default auto)."),
    dead_tokens: Optional[int] = typer.Option(None, "--dead-tokens", help="Tokens without firing before a latent is dead."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Tokens between checkpoints."),
    sweep: Optional[Path] = typer.Option(None, help="TOML sweep file: one \\[\\[sae]] table per SAE, all trained from one pass."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace whatever --out holds."),
) -> None:
    """Train sparse autoencoders on an activation store.

    One SAE: [bold]visae train --store ACTS --arch topk --k 32 --expansion 16 --out RUN[/bold].
    Several from one pass over the store: [bold]visae train --sweep sweep.toml --out RUN[/bold].
    Each SAE lands in RUN/saes/NAME as a SAELens folder that takes raw activations;
    metrics in RUN/metrics.jsonl, plots in RUN/plots/. A killed run continues with --resume.
    """
    from visae.errors import VisaeError
    from visae.sae.sweep import load_sweep
    from visae.sae.train_config import SAEHparams, TrainConfig
    from visae.sae.trainer import train

    per_sae = dict(arch=arch, k=k, expansion=expansion, d_sae=d_sae, lr=lr, sparsity_coeff=sparsity_coeff)
    run = dict(
        store=store, out=out, tokens=tokens, batch_size=batch_size, seed=seed, dtype=dtype, device=device,
        dead_tokens=dead_tokens, checkpoint_every=checkpoint_every, resume=resume or None, force=force or None,
    )
    if sweep is not None:
        cfg = load_sweep(sweep, sae_defaults=per_sae, **run)
    else:
        if store is None or out is None:
            raise VisaeError("visae train needs --store and --out", "see visae train --help")
        cfg = TrainConfig.build(**run, saes=[SAEHparams.build(**per_sae)])
    result = train(cfg)
    for name in result.names:
        print(result.path / "saes" / name)


@app.command("export")
def export_cmd(
    src: str = typer.Argument(..., help="A visae run, or a SAELens/sparsify folder or dictionary_learning ae.pt."),
    out: str = typer.Option(..., "--out", help="Folder to write as SAELens (cfg.json + sae_weights.safetensors)."),
    name: Optional[str] = typer.Option(None, help="Which SAE of a multi-SAE run (see RUN/saes/)."),
    force: bool = typer.Option(False, "--force", help="Replace whatever --out holds."),
) -> None:
    """Write an SAE as a SAELens folder (normalisation folded in: it takes raw activations)."""
    from visae.sae.export import ExportConfig, export

    print(export(ExportConfig.build(src=src, out=out, name=name, force=force or None)))
