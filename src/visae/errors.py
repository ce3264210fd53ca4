"""One exception type for everything a user can get wrong.

The CLI prints ``VisaeError`` as a single line (what was wrong, then what to do) and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VisaeError(Exception):
    """Bad input or a refused operation, with a hint that says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ``did you mean 'x'?`` fragment, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
