"""The root typer application that every stage's CLI module adds to."""

from __future__ import annotations

import inspect
import os
import re
import sys

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from visae.cli.failure import FileEndedEarly

INTERRUPTED = "interrupted; partial outputs are kept: rerun the same command to continue"


class Settings:
    """Root options that ``visae.cli.main`` reads after the command ran (``--debug``)."""

    debug: bool = False


settings = Settings()


def debug_wanted() -> bool:
    """``visae --debug CMD`` or VISAE_DEBUG=1: show tracebacks of failures."""
    return settings.debug or os.environ.get("VISAE_DEBUG", "") not in ("", "0")


_LITERAL = re.compile(r"\s|\$")  # a line of an example or command, shown as written
_ITEM = re.compile(r"(?:[-*•]|\d+[.)])\s")  # a list item starts a new line


def reflow(text: str) -> str:
    """A docstring as --help should show it: each paragraph's hard-wrapped lines joined into one line.

    Blank lines still separate paragraphs; a paragraph that starts with click's ``\\b`` is kept as
    written; a line that starts with whitespace or ``$`` (an example, a command) stays on its own
    line, and a list item (``- ``, ``* ``, ``1. ``) starts a new line (its lines indented under its
    text join it). Anything after ``\\f`` is kept.
    """
    body, sep, rest = inspect.cleandoc(text).partition("\f")
    paragraphs = []
    for paragraph in re.split(r"\n[ \t]*\n", body.strip("\n")):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        joinable = False  # whether the last line takes the next one
        hanging = -1  # the indent of a list item's text: its wrapped lines join it
        for line in paragraph.split("\n"):
            indent = len(line) - len(line.lstrip())
            if joinable and indent == hanging and line.strip():
                lines[-1] += " " + line.strip()
            elif _LITERAL.match(line):
                lines.append(line.rstrip())
                joinable, hanging = False, -1
            elif joinable and not _ITEM.match(line):
                lines[-1] += " " + line.strip()
            else:
                item = _ITEM.match(line)
                lines.append(line.strip())
                joinable, hanging = True, (item.end() if item else -1)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs) + sep + rest


def _reflow_tree(command: object) -> None:
    """Reflow the help of ``command`` and of every command under it (once per command object)."""
    if getattr(command, "help", None) and not getattr(command, "_visae_reflowed", False):
        command.help = reflow(command.help)  # type: ignore[attr-defined]
        command._visae_reflowed = True  # type: ignore[attr-defined]
    for sub in (getattr(command, "commands", None) or {}).values():
        _reflow_tree(sub)


def _flag_type(self: TyperOption, ctx: typer.Context) -> str | None:
    """No ``<bool>`` placeholder after a flag (``--force``, ``--help``): it takes no value."""
    if getattr(self, "is_flag", False) and not getattr(self, "count", False):
        return None
    return _option_type(self, ctx)


def _argument_usage(self: TyperArgument) -> str:
    """A positional argument in the usage line as click writes it: ``SRC``, ``[SRC]``, ``SRC...``."""
    name = self.metavar if self.metavar is not None else (self.name or "").upper()
    if not self.required:
        name = f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


# typer shows every flag as ``--force <bool>`` and a required argument as ``{src}``; this is the one
# place that changes how visae's --help reads (guarded: another typer version may not have them).
_option_type = getattr(TyperOption, "display_type_rich", None)
if _option_type is not None:
    TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
if hasattr(TyperArgument, "_usage_display_name"):
    TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]


class RootGroup(TyperGroup):
    """Lets the two exceptions click would swallow reach ``main``'s error path.

    click turns an ``EOFError`` (a truncated file read by pickle or numpy) into a bare
    "Aborted!" with status 1, and a ``KeyboardInterrupt`` into a silent status 130.
    It also reflows the docstrings of every command under it (``reflow``): the help text
    is hard-wrapped in the source, and typer's rich help would keep those line breaks.
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002,ANN003
        super().__init__(*args, **kwargs)
        _reflow_tree(self)

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
