"""The root typer application that every stage's CLI module adds to."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from visae.cli.failure import FileEndedEarly

INTERRUPTED = "interrupted; partial outputs are kept and the stage can be resumed"


class Settings:
    """Root options that ``visae.cli.main`` reads after the command ran (``--debug``)."""

    debug: bool = False


settings = Settings()


def debug_wanted() -> bool:
    """``visae --debug CMD`` or VISAE_DEBUG=1: show tracebacks of failures."""
    return settings.debug or os.environ.get("VISAE_DEBUG", "") not in ("", "0")


class RootGroup(TyperGroup):
    """Lets the two exceptions click would swallow reach ``main``'s error path.

    click turns an ``EOFError`` (a truncated file read by pickle or numpy) into a bare
    "Aborted!" with status 1, and a ``KeyboardInterrupt`` into a silent status 130.
    """

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EOFError as e:
            raise FileEndedEarly(e) from e
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            raise


app = typer.Typer(
    name="visae",
    help="Sparse autoencoders for vision models: extract activations, train SAEs, find, test and measure features.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    cls=RootGroup,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full Python traceback of a failure (for bug reports); also VISAE_DEBUG=1."
    ),
) -> None:
    """visae: sparse autoencoders for vision models."""
    settings.debug = debug


def subcommand(name: str, help: str) -> typer.Typer:
    """A command group (``visae data ...``) attached to the root app."""
    group = typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(group, name=name)
    return group
