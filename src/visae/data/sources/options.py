"""``PATH?key=value&key=value`` options on a data spec, checked against what a scheme accepts."""

from __future__ import annotations

from visae.errors import VisaeError, did_you_mean


def split_options(rest: str, scheme: str, allowed: dict[str, tuple[str, ...]]) -> tuple[str, dict[str, str]]:
    """``'data/x?crop=box'`` -> ``('data/x', {'crop': 'box'})``; ``allowed`` maps key -> values."""
    path, sep, query = rest.partition("?")
    options: dict[str, str] = {}
    if not sep:
        return path, options
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"{scheme} accepts: {', '.join(allowed) or 'no options'}"
            raise VisaeError(f"unknown option '{key}' in a {scheme} spec", hint)
        if not eq or value not in allowed[key]:
            raise VisaeError(f"bad value '{value}' for {scheme} option '{key}'", f"use one of: {', '.join(allowed[key])}")
        options[key] = value
    return path, options


def require_path(path: str, scheme: str) -> str:
    if not path.strip():
        raise VisaeError(f"the {scheme} spec names no path", f"write {scheme}:PATH")
    return path
