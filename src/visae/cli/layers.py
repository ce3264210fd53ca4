"""``visae layers MODEL``: print the hookable modules of a model with output shapes and token layouts."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from visae.cli.app import app


@app.command("layers")
def layers(
    model: Annotated[
        str,
        typer.Argument(
            help="Backbone spec: hf:REPO_OR_PATH (transformers), timm:NAME[:CHECKPOINT], "
            "open_clip:ARCH[:PRETRAINED], torchvision:NAME[:CHECKPOINT]."
        ),
    ],
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Build the architecture with random weights on purpose (no weights needed).")
    ] = False,
    allow_position_match: Annotated[
        bool, typer.Option("--allow-position-match", help="Load a checkpoint whose tensor names differ from the model's by "
                           "position (refused otherwise; the weights are then unverified).")
    ] = False,
    filter: Annotated[str | None, typer.Option("--filter", help="Only list layers whose name contains this string.")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Input side in pixels, 1 to 4096 (default: the model's own).")] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device for the dummy forward.")] = "cpu",
) -> None:
    """List the layers of MODEL that visae can capture, in forward order.

    Runs one dummy forward with a hook on every module and prints each module that runs once and returns a pooled vector (B, D), a token sequence (B, N, D) or a feature map (B, C, H, W): its name (what --layer takes), its output shape without the batch, and how its output reads as tokens (CLS / register tokens / patch grid, or map cells).

    Example: visae layers hf:facebook/dinov2-small --filter encoder.layer
    """
    from visae.backbones.base import describe_layout  # torch loads only when the command runs
    from visae.backbones.listing import LayersConfig, list_layers

    cfg = LayersConfig.build(model=model, random_init=random_init, allow_position_match=allow_position_match,
                             filter=filter, size=size, device=device)  # fmt: skip
    family, input_size, infos = list_layers(cfg)
    table = Table(title=f"{model}  ({family}, input {input_size}x{input_size}, {len(infos)} layers)")
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer", style="bold")
    table.add_column("output shape", justify="right")
    table.add_column("dim", justify="right")
    table.add_column("tokens")
    for i, info in enumerate(infos):
        shape = "x".join(str(s) for s in info.shape)
        table.add_row(str(i), info.name, shape, str(info.layout.dim), describe_layout(info.layout))
    Console(width=200 if not Console().is_terminal else None).print(table)
