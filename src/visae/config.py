"""Typed configs: pydantic models, documented at the field, loadable from TOML.

Every stage takes one of these (``extract(cfg)``, ``train(cfg)``); the CLI only fills
them from flags. Bad values become a one-line ``VisaeError``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from visae.errors import VisaeError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base of every stage config: frozen, unknown keys refused, NaN and infinity refused, docstrings kept."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    @classmethod
    def build(cls: type[C], **values: Any) -> C:
        """Validate ``values`` (``None`` means 'use the default') into a config."""
        values = {k: v for k, v in values.items() if v is not None}
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            if err["type"] == "missing" and len(err["loc"]) == 1 and err["loc"][0] in cls.model_fields:
                name = str(err["loc"][0])
                raise VisaeError(f"'{name}' is required: {field_words(cls, name)}", f"pass {name}=...") from None
            raise VisaeError(_first_error(cls, e), "see --help for the accepted values") from None

    @classmethod
    def from_toml(cls: type[C], path: str | Path, **overrides: Any) -> C:
        """Load a TOML file, then apply non-None ``overrides`` (CLI flags win)."""
        values = read_toml(path, "config file")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(**values)


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The table of a TOML file, or a one-line error naming ``what`` it was meant to be."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise VisaeError(f"{what} {path} does not exist", "check the path") from None
    except tomllib.TOMLDecodeError as e:
        raise VisaeError(f"{what} {path} is not valid TOML ({e})", "fix that line (TOML: key = value, strings in quotes)") from None


def _first_error(cls: type[BaseModel], e: ValidationError) -> str:
    err = e.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:  # a check across fields: its message says it all
        return msg
    where = ".".join(str(p) for p in err["loc"])
    return f"bad value for '{where}': {msg}"


def field_doc(model: type[BaseModel], name: str) -> str:
    """A field's docstring (``use_attribute_docstrings``) on one line: the help text of its flag."""
    return " ".join((model.model_fields[name].description or "").split())


def field_words(model: type[BaseModel], name: str) -> str:
    """A field's docstring as words to go after a colon: its first sentence, lower-cased, no full stop."""
    doc = field_doc(model, name)
    first = re.split(r"(?<=[^.]\.)\s+(?=[A-Z])|;\s", doc, maxsplit=1)[0].removesuffix(".")
    if len(first) > 1 and first[0].isupper() and not first[1].isupper():
        first = first[0].lower() + first[1:]
    return first or name.replace("_", " ")


def missing(command: str, model: type[BaseModel], name: str, flag: str | None = None, *, config: bool = False) -> VisaeError:
    """``visae extract needs --out: the store directory to write``: a required setting nobody gave."""
    flag = flag or "--" + name.replace("_", "-")
    hint = f"pass {flag}, or set {name} in the --config file" if config else f"pass {flag} (see {command} --help)"
    return VisaeError(f"{command} needs {flag}: {field_words(model, name)}", hint)
