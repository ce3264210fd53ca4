"""CLI of the extract stage: ``visae extract`` (every flag but --config is an ``ExtractConfig`` field)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from visae.cli.app import app
from visae.cli.options import option
from visae.extraction.config import ExtractConfig as X

RUNNING = "Running"


@app.command("extract")
def extract(
    model: Optional[str] = option(X, "model"),
    layers: Optional[list[str]] = option(X, "layers", "--layer"),
    data: Optional[str] = option(X, "data"),
    out: Optional[Path] = option(X, "out"),
    split: Optional[str] = option(X, "split"),
    tokens: Optional[str] = option(X, "tokens"),
    dtype: Optional[str] = option(X, "dtype"),
    batch_size: Optional[int] = option(X, "batch_size"),
    shard_tokens: Optional[int] = option(X, "shard_tokens"),
    max_images: Optional[int] = option(X, "max_images"),
    seed: Optional[int] = option(X, "seed"),
    random_init: Optional[bool] = option(X, "random_init"),
    allow_position_match: Optional[bool] = option(X, "allow_position_match"),
    resume: Optional[bool] = option(X, "resume", panel=RUNNING),
    force: Optional[bool] = option(X, "force", panel=RUNNING),
    workers: Optional[int] = option(X, "workers", panel=RUNNING),
    device: Optional[str] = option(X, "device", panel=RUNNING),
    skip_nonfinite: Optional[bool] = option(X, "skip_nonfinite", panel=RUNNING),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these settings (keys named "
                                          "like the flags, with underscores); flags win."),  # fmt: skip
) -> None:
    """Run a backbone over a dataset split and write the activations of one or more layers into
    sharded stores (checksummed, resumable; see `visae store verify|info`).

    Example: visae extract --model hf:runs/demo/classifier --layer convnext.encoder.stages.1
    --data synth-aircraft:runs/demo/data --out runs/demo/store
    """
    flags = {key: value for key, value in locals().items() if key != "config"}
    from visae.cli.options import build
    from visae.extraction.run import extract as run

    cfg = build(X, config, **flags)
    result = run(cfg)
    stores = result if isinstance(result, dict) else {cfg.layers[0]: result}
    from visae.distributed import world

    for store in stores.values() if world().main else ():  # under torchrun: rank 0 only
        print(f"{store.path}\t{len(store)} tokens x {store.d}\t{store.n_images} images")
