"""The CLI's one error path (``visae.cli.main``): whatever a command raises, one line on stderr and
status 2; the traceback only under ``--debug`` or VISAE_DEBUG=1; Ctrl-C keeps status 130."""

from __future__ import annotations

import errno
import pickle

import pytest
from cli_helpers import run

import visae.data.describe


def _raising(exc: BaseException):
    def describe(spec: str):
        raise exc

    return describe


def _one_error_line(res) -> str:
    assert res.code == 2, res.err
    assert len(res.err_lines) == 1 and res.err_lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err + res.out and "╭" not in res.err
    return res.err_lines[0]


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv("VISAE_QUIET", "1")
    monkeypatch.delenv("VISAE_DEBUG", raising=False)


def test_a_bug_is_one_line_that_asks_for_a_report(monkeypatch, quiet):
    monkeypatch.setattr(visae.data.describe, "describe", _raising(ZeroDivisionError("division by zero\nmore")))
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert line == ("error: internal error: ZeroDivisionError: division by zero "
                    "(please report it; rerun with --debug for the traceback)")  # fmt: skip


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_then_the_line(monkeypatch, quiet, how):
    monkeypatch.setattr(visae.data.describe, "describe", _raising(ZeroDivisionError("boom")))
    if how == "env":
        monkeypatch.setenv("VISAE_DEBUG", "1")
    res = run(*(["--debug"] if how == "flag" else []), "data", "info", "mnist5k")
    assert res.code == 2 and "Traceback (most recent call last)" in res.err and "ZeroDivisionError: boom" in res.err
    assert res.err_lines[-1].startswith("error: internal error: ZeroDivisionError: boom")
    again = run("data", "info", "mnist5k")  # --debug lasts one command
    assert ("Traceback" in again.err) == (how == "env")


@pytest.mark.parametrize(
    "code, verb, hint",
    [
        (errno.EACCES, "write", "check its permissions"),
        (errno.ENOSPC, "write", "free some disk space"),
        (errno.EROFS, "write", "read-only"),
        (errno.ENAMETOOLONG, "access", "shorter path"),
        (errno.EISDIR, "access", "give a file path"),
    ],
)
def test_os_errors_name_the_path_and_what_to_do(monkeypatch, quiet, tmp_path, code, verb, hint):
    path = tmp_path / "out" / "x.bin"
    exc = OSError(code, errno.errorcode[code], str(path))
    monkeypatch.setattr(visae.data.describe, "describe", _raising(exc))
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert line.startswith(f"error: cannot {verb} {path}: ") and hint in line


def test_a_long_path_is_shortened_in_the_message(monkeypatch, quiet):
    path = "/tmp/" + "d" * 5000
    monkeypatch.setattr(visae.data.describe, "describe", _raising(OSError(errno.ENAMETOOLONG, "File name too long", path)))
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert "(5005 characters)" in line and len(line) < 400


@pytest.mark.parametrize(
    "exc",
    [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 5280000000000 bytes.")],
)
def test_out_of_memory(monkeypatch, quiet, exc):
    monkeypatch.setattr(visae.data.describe, "describe", _raising(exc))
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert line.startswith("error: out of memory") and "--batch-size" in line
    if isinstance(exc, RuntimeError):
        assert "(tried to allocate 4,917.4 GiB)" in line


def test_a_truncated_pickle_is_a_read_error_not_aborted(monkeypatch, quiet, tmp_path):
    """click turns an EOFError into a bare 'Aborted!' with status 1; the CLI reports the file instead."""
    empty = tmp_path / "state.pt"
    empty.write_bytes(b"")

    def describe(spec: str):
        path = empty
        with open(path, "rb") as f:
            return pickle.load(f)

    monkeypatch.setattr(visae.data.describe, "describe", describe)
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert line.startswith(f"error: cannot read {empty} (EOFError: Ran out of input)") and "Aborted" not in line


def test_a_torn_safetensors_file_is_named(monkeypatch, quiet, tmp_path):
    from safetensors.torch import load_file

    torn = tmp_path / "w.safetensors"
    torn.write_bytes(b"\x10\x00\x00")
    monkeypatch.setattr(visae.data.describe, "describe", lambda spec: load_file(str(torn)))
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert line.startswith(f"error: cannot read {torn} (SafetensorError: ") and "re-create it" in line


def test_ctrl_c_exits_130_with_its_message(monkeypatch, quiet):
    monkeypatch.setattr(visae.data.describe, "describe", _raising(KeyboardInterrupt()))
    res = run("data", "info", "mnist5k")
    assert res.code == 130 and res.err_lines == ["interrupted; partial outputs are kept: rerun the same command to continue"]


def test_usage_errors_keep_clicks_output(quiet):
    res = run("layers", "hf:x", "--size", "abc")
    assert res.code == 2 and "Usage: visae layers" in res.err and "error:" not in res.err.lower().split("usage")[0]


def test_no_command_group_prints_rich_tracebacks():
    from visae.cli import app

    groups = [app] + [g.typer_instance for g in app.registered_groups]
    assert all(g.pretty_exceptions_enable is False for g in groups) and len(groups) >= 4


def test_debug_shows_the_library_error_a_clean_message_replaced(monkeypatch, quiet):
    from visae.errors import VisaeError

    def describe(spec: str):
        try:
            raise ValueError("the library's own words")
        except ValueError:
            raise VisaeError("cannot read it", "fix it") from None

    monkeypatch.setattr(visae.data.describe, "describe", describe)
    assert "the library's own words" not in run("data", "info", "mnist5k").err
    res = run("--debug", "data", "info", "mnist5k")
    assert "ValueError: the library's own words" in res.err and res.err_lines[-1] == "error: cannot read it; fix it"


def test_a_full_disk_names_the_file_being_written(monkeypatch, quiet, tmp_path):
    target = tmp_path / "shard_000003.npy"

    def describe(spec: str):
        path = target  # as visae.atomic.write_with names it
        with open(path, "wb"):
            raise OSError(errno.ENOSPC, "No space left on device")  # what f.write raises: no filename

    monkeypatch.setattr(visae.data.describe, "describe", describe)
    line = _one_error_line(run("data", "info", "mnist5k"))
    assert line == f"error: cannot write {target}: No space left on device; free some disk space, or write to another disk"
