"""CLI for the train stage: ``visae train`` and ``visae export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from visae.cli.app import app
from visae.cli.options import number_list, option
from visae.sae.train_config import SAEHparams as S
from visae.sae.train_config import TrainConfig as T


SCHEDULE = "Schedule and losses"
EVAL = "Held-out evaluation and dead latents"
LOGS = "Logging, checkpoints, init"
NOT_FIELDS = {"config", "sweep"}
"""Parameters of ``visae train`` that are not TrainConfig / SAEHparams fields (every other one is, by name)."""


@app.command("train")
def train_cmd(
    config: Optional[Path] = typer.Option(
        None, "--config", help="TOML file with any setting below (keys named like the flags, with underscores; "
        "several SAEs as \\[\\[sae]] tables, all trained from one pass); flags win. Example: docs/train-config.md."
    ),
    store: Optional[str] = option(T, "store"),
    out: Optional[str] = option(T, "out"),
    arch: Optional[str] = option(S, "arch"),
    k: Optional[int] = option(S, "k"),
    expansion: Optional[int] = option(S, "expansion"),
    d_sae: Optional[int] = option(S, "d_sae"),
    training_tokens: Optional[int] = option(T, "training_tokens"),
    tokens: Optional[str] = option(T, "tokens"),
    batch_size: Optional[int] = option(T, "batch_size"),
    lr: Optional[float] = option(S, "lr"),
    sparsity_coeff: Optional[float] = option(S, "sparsity_coeff"),
    seed: Optional[int] = option(T, "seed"),
    dtype: Optional[str] = option(T, "dtype"),
    device: Optional[str] = option(T, "device"),
    parallel: Optional[str] = option(T, "parallel"),
    stream: Optional[str] = option(T, "stream"),
    resume: Optional[bool] = option(T, "resume"),
    force: Optional[bool] = option(T, "force"),
    lr_warmup: Optional[float] = option(T, "lr_warmup", panel=SCHEDULE),
    lr_decay: Optional[float] = option(T, "lr_decay", panel=SCHEDULE),
    sparsity_warmup: Optional[float] = option(T, "sparsity_warmup", panel=SCHEDULE),
    grad_clip: Optional[float] = option(T, "grad_clip", panel=SCHEDULE),
    auxk_coeff: Optional[float] = option(S, "auxk_coeff", panel=SCHEDULE),
    prefixes: Optional[str] = option(S, "prefixes", panel=SCHEDULE),
    bandwidth: Optional[float] = option(S, "bandwidth", panel=SCHEDULE),
    threshold_init: Optional[float] = option(S, "threshold_init", panel=SCHEDULE),
    normalize: Optional[bool] = option(T, "normalize", panel=SCHEDULE),
    holdout: Optional[float] = option(T, "holdout", panel=EVAL),
    eval_tokens: Optional[int] = option(T, "eval_tokens", panel=EVAL),
    eval_every: Optional[int] = option(T, "eval_every", panel=EVAL),
    eval_store: Optional[str] = option(T, "eval_store", panel=EVAL),
    dead_tokens: Optional[int] = option(T, "dead_tokens", panel=EVAL),
    dead_fraction: Optional[float] = option(T, "dead_fraction", panel=EVAL),
    name: Optional[str] = option(S, "name", panel=LOGS),
    log_every: Optional[int] = option(T, "log_every", panel=LOGS),
    checkpoint_every: Optional[int] = option(T, "checkpoint_every", panel=LOGS),
    median_sample: Optional[int] = option(T, "median_sample", panel=LOGS),
    sweep: Optional[Path] = typer.Option(None, "--sweep", hidden=True, help="Old name of --config."),
) -> None:
    """Train sparse autoencoders on an activation store.

    One SAE: [bold]visae train --store ACTS --arch topk --k 32 --expansion 16 --out RUN[/bold].
    Several from one pass over the store: [bold]visae train --config sweep.toml --out RUN[/bold], one
    \\[\\[sae]] table per SAE. Every setting is a flag and a key of the same name in the --config file;
    flags win over the file (docs/train-config.md). Each SAE lands in RUN/saes/NAME as a SAELens folder
    that takes raw activations; metrics in RUN/metrics.jsonl, plots in RUN/plots/. A killed run
    continues with --resume.
    """
    flags = {key: value for key, value in locals().items() if key not in NOT_FIELDS}
    from visae.errors import VisaeError
    from visae.progress import warn
    from visae.sae.sweep import sae_keys, train_config
    from visae.sae.trainer import train

    if config is not None and sweep is not None:
        raise VisaeError("--sweep is the old name of --config", "pass one of them")
    if tokens is not None and tokens.isdigit():
        warn("--tokens N is now --training-tokens N (--tokens picks token kinds)")
        flags["training_tokens"], flags["tokens"] = training_tokens or int(tokens), None
    flags.update(resume=resume or None, force=force or None, prefixes=number_list(prefixes, "--prefixes"))
    per_sae = {key: value for key, value in flags.items() if key in sae_keys()}
    run = {key: value for key, value in flags.items() if key not in per_sae}
    result = train(train_config(config or sweep, run, per_sae))
    from visae.distributed import world

    if world().main:  # under torchrun every rank ran the command; rank 0 reports
        for sae_name in result.names:
            print(result.path / "saes" / sae_name)


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
