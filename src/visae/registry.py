"""Name -> factory registries (timm's ``create_model`` habit): spec strings pick an entry; spec paths; lazy package names."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from visae.errors import VisaeError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories; ``@REG.register("name")`` adds one."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            hint = did_you_mean(name, self._entries) or f"known: {known}"
            raise VisaeError(f"unknown {self.what} '{name}'", hint) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def absolute_spec(spec: str) -> str:
    """``spec`` with the relative local path it names made absolute (``hf:runs/x`` -> ``hf:/home/me/runs/x``), so that
    the stores and runs that record it work from any directory. The path is the part after the scheme, or after its
    last ':' (``timm:NAME:CHECKPOINT``); it is rewritten only when it exists here, so hub ids and names stay as typed."""
    scheme, sep, rest = spec.partition(":")
    if not sep:
        return spec
    for part in dict.fromkeys((rest, rest.rpartition(":")[2])):
        path = Path(part).expanduser()
        if part and not path.is_absolute() and path.exists():
            return spec[: len(spec) - len(part)] + str(path.resolve())
    return spec


def relative_note(path: str | Path) -> str:
    """For a 'does not exist' error about a relative path: where it was looked for, and why it may have moved."""
    if Path(path).expanduser().is_absolute():
        return ""
    return (f" (a relative path is read from the current directory, {os.getcwd()}; stores and runs made before visae "
            "recorded absolute paths must be used from the directory they were made in)")


def split_spec(spec: str) -> tuple[str, str]:
    """``'scheme:rest'`` -> ``('scheme', 'rest')``; a bare name has an empty rest."""
    scheme, sep, rest = spec.partition(":")
    return scheme.strip().lower(), rest if sep else ""


def lazy_names(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A package's module ``__getattr__`` (PEP 562) that imports ``where[name]`` (a module path) on first use and
    returns its attribute ``name``: the package imports nothing heavy until a name is asked for."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
