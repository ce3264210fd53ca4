"""CLI options derived from the stage configs, so that a flag's name, help text and default have one source.

``option(ExtractConfig, "batch_size")`` is ``--batch-size`` with the field's docstring as its help and the
field's default shown after it (``[default: 64]``); a required field is marked ``[required]``. The option
itself defaults to None ("not given": the --config file's value, else the field's default), and ``build``
turns the flags into the config, naming a missing required setting in plain words
(``visae extract needs --out: the store directory to write``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel

from visae.config import Config, field_doc, missing, read_toml

C = TypeVar("C", bound=Config)

FLAGS: dict[tuple[type[BaseModel], str], str] = {}
"""(config, field) -> the flag it was given as, where that is not ``--field-name`` (``layers``: ``--layer``)."""


def option(model: type[BaseModel], name: str, *flags: str, panel: str | None = None, **kw: Any) -> Any:
    """A typer option for the field ``name`` of ``model``: flag, help text and shown default from the field.

    ``flags`` defaults to ``--field-name``; a bool field that defaults to True becomes ``--name/--no-name``.
    """
    field = model.model_fields[name]  # a KeyError here is a typo in a CLI module
    default = field.get_default(call_default_factory=True)
    if not flags:
        dashed = "--" + name.replace("_", "-")
        flags = (f"{dashed}/--no-{name.replace('_', '-')}",) if default is True else (dashed,)
    if flags[0].split("/")[0] != "--" + name.replace("_", "-"):
        FLAGS[(model, name)] = flags[0].split("/")[0]
    return typer.Option(None, *flags, help=help_text(model, name), show_default=False, rich_help_panel=panel, **kw)


def number_list(text: str | None, flag: str, kind: type = int, example: str = "512,2048,8192") -> list[Any] | None:
    """A comma list flag: ``--prefixes 512,2048`` -> [512, 2048] (``kind`` float: ``--doses -1,0.5``); None: not given."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        from visae.errors import VisaeError

        what = "integers" if kind is int else "numbers"
        raise VisaeError(f"{flag} {text!r} is not a list of {what}", f"e.g. {flag} {example}") from None


def help_text(model: type[BaseModel], name: str) -> str:
    """The field's docstring (rich markup escaped), then ``[default: ...]`` or ``[required]``."""
    from rich.markup import escape

    field = model.model_fields[name]
    text = escape(field_doc(model, name))
    if field.is_required():
        return f"{text} \\[required]"
    shown = default_text(field.get_default(call_default_factory=True))
    return f"{text} \\[default: {shown}]" if shown is not None else text


def default_text(value: Any) -> str | None:
    """How a default reads in --help (None: not shown, as for an unset optional or a flag that is off)."""
    if value is None or value is False:
        return None
    if value is True:
        return "on"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def flag_of(model: type[BaseModel], name: str) -> str:
    return FLAGS.get((model, name), "--" + name.replace("_", "-"))


def command_path() -> str:
    """``visae extract``: the command being run (``visae`` outside click)."""
    try:  # typer's own copy of click (newer typer vendors it), else click's
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "visae"


def check_required(model: type[BaseModel], values: dict[str, Any], *, config: bool = False) -> None:
    """Refuse, in plain words, the first required field of ``model`` that ``values`` lacks."""
    for name, field in model.model_fields.items():
        if field.is_required() and values.get(name) is None:
            raise missing(command_path(), model, name, flag_of(model, name), config=config)


def build(config_cls: type[C], config_file: Path | str | None = None, /, **flags: Any) -> C:
    """The config of the flags given (None: not given) over the --config file's values (if any)."""
    given = {k: v for k, v in flags.items() if v is not None}
    values = {**(read_toml(config_file, "config file") if config_file is not None else {}), **given}
    check_required(config_cls, values, config=config_file is not None)
    return config_cls.from_toml(config_file, **given) if config_file is not None else config_cls.build(**given)
