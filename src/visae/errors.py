"""One exception type for everything a user can get wrong.

The CLI prints ``VisaeError`` as a single line (what was wrong, then what to do) and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class VisaeError(Exception):
    """Bad input or a refused operation, with a hint that says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


_FLAG_VALUE = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*) (-?[0-9][0-9.e+-]*x?)(?![\w.])")
_FLAG = re.compile(r"(?<![\w-])--(no-)?([a-z][a-z0-9-]*)")
SWITCHES = {"force", "resume", "allow-mismatch", "allow-position-match", "random-init", "skip-nonfinite", "quick",
            "serve", "text-labels", "random-baseline", "normalize"}  # fmt: skip
"""Flags that are switches: in Python ``force=True`` (``--no-X``: ``X=False``)."""


def in_python(text: str) -> str:
    """A message or hint written for the command line, for a caller of the Python API: ``--force`` becomes
    ``force=True``, ``--batch-size 256`` ``batch_size=256``, ``--training-tokens`` ``training_tokens=...``; a command
    quoted in backticks stays a command."""

    def keyword(m: re.Match) -> str:
        name = m[2].replace("-", "_")
        if m[2] in SWITCHES:
            return f"{name}={'False' if m[1] else 'True'}"
        return ("no_" if m[1] else "") + name + ("" if name == "config" else "=...")  # "the --config file": "the config file"

    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside `...`
        parts[i] = _FLAG.sub(keyword, _FLAG_VALUE.sub(lambda m: f"{m[1].replace('-', '_')}={m[2]}", parts[i]))
    return "`".join(parts)


def for_python(e: VisaeError) -> VisaeError:
    """``e`` with its message and hint in the Python API's terms (``in_python``), in place."""
    e.message, e.hint = in_python(e.message), None if e.hint is None else in_python(e.hint)
    e.args = (f"{e.message}; {e.hint}" if e.hint else e.message,)
    return e


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ``did you mean 'x'?`` fragment, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
