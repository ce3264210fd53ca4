"""Run the real `visae` command line in-process and fingerprint artifact trees (shared by tests/cli)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from visae.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run(*args: object) -> Result:
    """``visae ARGS`` through ``visae.cli.main`` (the console script's entry point): exit status and both streams."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def must(*args: object) -> Result:
    """Run a command that has to succeed (fixture building)."""
    res = run(*args)
    assert res.code == 0, f"visae {' '.join(map(str, args))} failed ({res.code}):\n{res.err}"
    return res


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest), leaving out the trees in ``skip``."""
    digests = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(p.is_relative_to(s) for s in skip):
            digests[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digests
