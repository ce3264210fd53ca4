"""The root typer application that every stage's CLI module adds to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="visae",
    help="Sparse autoencoders for vision models: extract activations, train SAEs, find, test and measure features.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root() -> None:
    """visae: sparse autoencoders for vision models."""


def subcommand(name: str, help: str) -> typer.Typer:
    """A command group (``visae data ...``) attached to the root app."""
    group = typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(group, name=name)
    return group

