"""Run ``visae ARGS`` in this process and SIGKILL it at a deterministic point.

    python kill_child.py NAME N -- visae-args...

kills the process just before the N-th rename onto a file named NAME (the last step of an
atomic write: the new file is complete under its temporary name, the old one still in place),
i.e. the worst moment for a stage. The test fakes (FakeBackbone for ``extract --model fake:tiny``,
the planted ``analysis-test:`` dataset) are installed first.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def kill_before_rename(name: str, nth: int) -> None:
    seen = 0
    for fn in ("replace", "rename"):
        real = getattr(os, fn)

        def wrapped(src, dst, *a, _real=real, **kw):  # type: ignore[no-untyped-def]
            nonlocal seen
            if os.path.basename(os.fspath(dst)) == name:
                seen += 1
                if seen == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            return _real(src, dst, *a, **kw)

        setattr(os, fn, wrapped)


def install_fakes() -> None:
    sys.path[:0] = [str(HERE.parent / "extraction"), str(HERE.parent / "analysis")]
    import analysis_fixtures  # noqa: F401  (registers the analysis-test: data scheme)
    from extract_fakes import FakeBackbone

    import visae.extraction.run

    visae.extraction.run.load_backbone = lambda cfg: FakeBackbone()


if __name__ == "__main__":
    name, nth, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: kill_child.py NAME N -- ARGS"
    install_fakes()
    kill_before_rename(name, int(nth))
    from visae.cli import main

    main(argv)
