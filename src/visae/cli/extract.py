"""CLI of the extract stage: ``visae extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from visae.cli.app import app


@app.command("extract")
def extract(
    model: Optional[str] = typer.Option(
        None, "--model", help="Backbone spec: hf:REPO_OR_PATH (e.g. a `visae classifier train` dir), timm:NAME[:CKPT], ..."
    ),
    layer: Optional[list[str]] = typer.Option(
        None, "--layer", help="Layer to store (`visae layers MODEL` lists them). Repeat for several layers: one "
        "forward pass, one store per layer in OUT/<layer>."
    ),
    data: Optional[str] = typer.Option(None, "--data", help="Images: folder:PATH, synth-aircraft:PATH, hf:NAME, mnist5k ..."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to extract (default: the data's train split)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Store directory (several layers: one sub-directory each)."),
    tokens: Optional[str] = typer.Option(
        None, "--tokens", help="Tokens to keep: patch (grid cells / patch tokens), cls, registers or all (default: patch)."
    ),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Storage precision: bf16, fp16 or fp32 (default: bf16)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass (default: 64)."),
    shard_tokens: Optional[int] = typer.Option(
        None, "--shard-tokens", help="Tokens per shard file (default: a power of two near 128 MiB per shard)."
    ),
    max_images: Optional[int] = typer.Option(
        None, "--max-images", help="Extract a random subset of N images of the split (seeded by --seed; not the first N, "
        "which a class-sorted folder would fill with its first classes)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the --max-images subset (default: 0)."),
    random_init: bool = typer.Option(False, "--random-init", help="Random weights from the model's config (no weights needed)."),
    allow_position_match: bool = typer.Option(
        False, "--allow-position-match", help="Load a checkpoint whose tensor names differ from the model's by position "
        "(refused otherwise); the classifier is then checked on the labelled images extracted, and the store records it."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted extraction (also automatic when OUT holds the same settings)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace whatever OUT holds."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Image-decoding worker processes (default: 0)."),
    device: Optional[str] = typer.Option(
        None, "--device", help="auto (the GPU if there is one), cpu or cuda[:N] (default: auto). A store begun on one "
        "device can be resumed on another."
    ),
    skip_nonfinite: bool = typer.Option(
        False, "--skip-nonfinite", help="Leave out images with NaN/Inf activations (listed in the metadata) instead of stopping."
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any ExtractConfig field; flags win."),
) -> None:
    """Run a backbone over a dataset split and write the activations of one or more layers into
    sharded stores (checksummed, resumable; see `visae store verify|info`).

    Example: visae extract --model hf:runs/demo/classifier --layer convnext.encoder.stages.2
    --data synth-aircraft:runs/demo/data --out runs/demo/store
    """
    from visae.extraction import ExtractConfig
    from visae.extraction.run import extract as run

    flags = dict(model=model, layers=layer or None, data=data, split=split, out=out, tokens=tokens, dtype=dtype,
                 batch_size=batch_size, shard_tokens=shard_tokens, max_images=max_images, seed=seed,
                 random_init=random_init or None, allow_position_match=allow_position_match or None,
                 resume=resume or None, force=force or None, workers=workers,
                 device=device, skip_nonfinite=skip_nonfinite or None)  # fmt: skip
    cfg = ExtractConfig.from_toml(config, **flags) if config else ExtractConfig.build(**flags)
    result = run(cfg)
    stores = result if isinstance(result, dict) else {cfg.layers[0]: result}
    for store in stores.values():
        print(f"{store.path}\t{len(store)} tokens x {store.d}\t{store.n_images} images")
