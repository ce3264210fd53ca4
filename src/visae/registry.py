"""Name -> factory registries (timm's ``create_model`` habit): spec strings pick an entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

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


def split_spec(spec: str) -> tuple[str, str]:
    """``'scheme:rest'`` -> ``('scheme', 'rest')``; a bare name has an empty rest."""
    scheme, sep, rest = spec.partition(":")
    return scheme.strip().lower(), rest if sep else ""
