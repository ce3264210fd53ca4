"""The ``visae`` command: parse flags into a stage config, call the stage, print.

No logic lives here. Each stage has its own small CLI module that adds its commands to
``app``; ``main`` is the one error path: any exception becomes one line on stderr
(``visae.cli.failure.explain``) and exit status 2, with the traceback under ``--debug``
or VISAE_DEBUG=1. Usage errors keep click's output and status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
import traceback

from visae.cli.app import INTERRUPTED, app, debug_wanted, settings
from visae.cli.failure import FileEndedEarly, explain

# Each import adds its commands to ``app``, in pipeline order (the order --help lists them).
from visae.cli import data as _data  # noqa: F401,E402
from visae.cli import classifier as _classifier  # noqa: F401,E402
from visae.cli import layers as _layers  # noqa: F401,E402
from visae.cli import extract as _extract  # noqa: F401,E402
from visae.cli import store as _store  # noqa: F401,E402
from visae.cli import train as _train  # noqa: F401,E402
from visae.cli import analyze as _analyze  # noqa: F401,E402
from visae.cli import steer as _steer  # noqa: F401,E402
from visae.cli import evaluate as _evaluate  # noqa: F401,E402
from visae.cli import serve as _serve  # noqa: F401,E402
from visae.cli import demo as _demo  # noqa: F401,E402


@app.command()
def version() -> None:
    """Print visae's version."""
    from visae import __version__

    print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Run the ``visae`` command line (``argv`` without the program name; None: sys.argv)."""
    settings.debug = False
    try:
        app(args=argv, prog_name="visae", standalone_mode=True)
    except KeyboardInterrupt:  # outside a command (a command's own is reported by the root group)
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # MemoryError included
        if debug_wanted():
            shown = e.error if isinstance(e, FileEndedEarly) else e
            _unsuppress(shown)
            traceback.print_exception(shown, file=sys.stderr)
        sys.stdout.flush()
        print(f"error: {explain(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        _leave_job()


def _leave_job() -> None:
    """Leave a torchrun job's process group at the end of a command (only if the command joined one)."""
    dist = sys.modules.get("visae.distributed")
    if dist is not None:
        try:
            dist.shutdown()
        except Exception:  # noqa: BLE001  (a broken group at exit must not hide the command's own result)
            pass


def _unsuppress(e: BaseException | None) -> None:
    """Show, under --debug, the library errors that a ``raise VisaeError(...) from None`` hid."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__suppress_context__ = False
        e = e.__cause__ or e.__context__


__all__ = ["app", "main"]
