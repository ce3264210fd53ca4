"""Typed configs: pydantic models, documented at the field, loadable from TOML.

Every stage takes one of these (``extract(cfg)``, ``train(cfg)``); the CLI only fills
them from flags. Bad values become a one-line ``VisaeError``.
"""

from __future__ import annotations

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
