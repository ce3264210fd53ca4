"""CLI for the train stage: ``visae train`` and ``visae export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from visae.cli.app import app


SCHEDULE = "Schedule and losses"
EVAL = "Held-out evaluation and dead latents"
LOGS = "Logging, checkpoints, init"
NOT_FIELDS = {"config", "sweep"}
"""Parameters of ``visae train`` that are not TrainConfig / SAEHparams fields (every other one is, by name)."""


def _opt(flag: str, help: str, panel: str | None = None) -> Any:
    """An optional flag (None: the config file's value, else the default) in a --help panel."""
    return typer.Option(None, flag, help=help, rich_help_panel=panel)


@app.command("train")
def train_cmd(
    config: Optional[Path] = _opt(
        "--config", "TOML file with any setting below (keys named like the flags, with underscores; several SAEs "
        "as \\[\\[sae]] tables, all trained from one pass); flags win. Example: docs/train-config.md."
    ),
    store: Optional[str] = _opt("--store", "Activation store directory (from visae extract)."),
    out: Optional[str] = _opt("--out", "Run directory to write."),
    arch: Optional[str] = _opt("--arch", "relu | topk | batchtopk | jumprelu | matryoshka (default topk)."),
    k: Optional[int] = _opt("--k", "Active latents per token for top-k families (default 32)."),
    expansion: Optional[int] = _opt("--expansion", "Width as a multiple of the store's d (default 16)."),
    d_sae: Optional[int] = _opt("--d-sae", "Explicit number of latents (overrides --expansion)."),
    training_tokens: Optional[int] = _opt(
        "--training-tokens", "Training tokens (default: one pass over the store's training tokens)."
    ),
    tokens: Optional[str] = _opt("--tokens", "Token kinds to train on: patch | cls | registers | all (default: the "
                                 "store's own; a store of all kinds trains on patch)."),  # fmt: skip
    batch_size: Optional[int] = _opt("--batch-size", "Tokens per step (default 4096)."),
    lr: Optional[float] = _opt("--lr", "Adam learning rate (default 2e-4*sqrt(16384/d_sae))."),
    sparsity_coeff: Optional[float] = _opt("--sparsity-coeff", "L1 weight (relu, default 5), L0 (jumprelu, 1)."),
    seed: Optional[int] = _opt("--seed", "Seed for init and data order (default 0)."),
    dtype: Optional[str] = _opt("--dtype", "auto | fp32 | bf16 (bf16: encoder autocast; default auto: bf16 on a GPU)."),
    device: Optional[str] = _opt("--device", "auto | cpu | cuda[:i] (default auto)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace whatever --out holds."),
    lr_warmup: Optional[float] = _opt("--lr-warmup", "Share of steps with linear lr warmup (default 0.01).", SCHEDULE),
    lr_decay: Optional[float] = _opt("--lr-decay", "Last share of steps, linear decay to 0 (default 0.2).", SCHEDULE),
    sparsity_warmup: Optional[float] = _opt(
        "--sparsity-warmup", "Share of steps over which the sparsity coefficient ramps up (default 0.05).", SCHEDULE
    ),
    grad_clip: Optional[float] = _opt("--grad-clip", "Gradient norm clip (default 1).", SCHEDULE),
    auxk_coeff: Optional[float] = _opt("--auxk-coeff", "Weight of the AuxK dead-latent loss (default 1/32).", SCHEDULE),
    prefixes: Optional[str] = _opt(
        "--prefixes", "Matryoshka prefix sizes, comma-separated, ending at d_sae (default d_sae/16,/8,/4,/2,d_sae).",
        SCHEDULE,
    ),
    bandwidth: Optional[float] = _opt("--bandwidth", "JumpReLU straight-through bandwidth (default 0.001).", SCHEDULE),
    threshold_init: Optional[float] = _opt("--threshold-init", "JumpReLU initial threshold (default 0.001).", SCHEDULE),
    normalize: Optional[bool] = typer.Option(
        None, "--normalize/--no-normalize", rich_help_panel=SCHEDULE,
        help="Train on (x - mean) * scale, the store's statistics (default on; folded into the saved weights).",
    ),
    holdout: Optional[float] = _opt(
        "--holdout", "Share of the store's images kept out for held-out evaluation (default 0.05; 0: none).", EVAL
    ),
    eval_tokens: Optional[int] = _opt("--eval-tokens", "Held-out tokens evaluated (default 131072).", EVAL),
    eval_every: Optional[int] = _opt("--eval-every", "Training tokens between evaluations (default: 10 a run).", EVAL),
    eval_store: Optional[str] = _opt("--eval-store", "Evaluate on this store (another split) instead.", EVAL),
    dead_tokens: Optional[int] = _opt(
        "--dead-tokens", "Tokens without firing before a latent is dead (default: --dead-fraction of the run).", EVAL
    ),
    dead_fraction: Optional[float] = _opt("--dead-fraction", "Dead window as a share of the run (default 0.1).", EVAL),
    name: Optional[str] = _opt("--name", "Name of the SAE in RUN/saes/ (default ARCH-kK-xE).", LOGS),
    log_every: Optional[int] = _opt("--log-every", "Steps between metric lines (default 20).", LOGS),
    checkpoint_every: Optional[int] = _opt("--checkpoint-every", "Tokens between checkpoints (default 10M).", LOGS),
    median_sample: Optional[int] = _opt("--median-sample", "Tokens for the median b_dec init (default 65536).", LOGS),
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
    flags.update(resume=resume or None, force=force or None, prefixes=_int_list(prefixes, "--prefixes"))
    per_sae = {key: value for key, value in flags.items() if key in sae_keys()}
    run = {key: value for key, value in flags.items() if key not in per_sae}
    result = train(train_config(config or sweep, run, per_sae))
    for sae_name in result.names:
        print(result.path / "saes" / sae_name)


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        from visae.errors import VisaeError

        raise VisaeError(f"{flag} {text!r} is not a list of integers", f"e.g. {flag} 512,2048,8192") from None


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
