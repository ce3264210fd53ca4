"""The ``visae`` command: parse flags into a stage config, call the stage, print.

No logic lives here. Each stage has its own small CLI module that adds its commands to
``app``; ``main`` turns a ``VisaeError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

from visae.cli.app import app
from visae.errors import VisaeError

# Each import adds its commands to ``app``, in pipeline order (the order --help lists them).
from visae.cli import data as _data  # noqa: F401,E402
from visae.cli import classifier as _classifier  # noqa: F401,E402
from visae.cli import layers as _layers  # noqa: F401,E402
from visae.cli import extract as _extract  # noqa: F401,E402
from visae.cli import store as _store  # noqa: F401,E402
from visae.cli import train as _train  # noqa: F401,E402
from visae.cli import analyze as _analyze  # noqa: F401,E402
from visae.cli import demo as _demo  # noqa: F401,E402


@app.command()
def version() -> None:
    """Print visae's version."""
    from visae import __version__

    print(__version__)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="visae", standalone_mode=True)
    except VisaeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; partial outputs are kept and the stage can be resumed", file=sys.stderr)
        sys.exit(130)


__all__ = ["app", "main"]
