"""`visae serve` from the command line: loopback by default, a loud warning elsewhere, one-line refusals."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from cli_helpers import run  # noqa: E402

from visae.web import serve as serve_mod  # noqa: E402


def test_loopback_addresses_are_recognised():
    assert serve_mod.loopback("127.0.0.1") and serve_mod.loopback("::1") and serve_mod.loopback("localhost")
    assert serve_mod.loopback("127.0.0.2") and not serve_mod.loopback("0.0.0.0") and not serve_mod.loopback("192.168.1.5")


def test_a_taken_port_is_refused_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = run("serve", "--run", tmp_path, "--port", port)
    assert res.code != 0 and len(res.err_lines) == 1 and f"127.0.0.1:{port}" in res.err and "--port" in res.err


def test_binding_elsewhere_warns_and_the_default_is_loopback(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(serve_mod, "check_port", lambda host, port: None)
    monkeypatch.setattr(serve_mod, "app_for", lambda cfg: "app")
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(host=host, port=port))
    res = run("serve", "--run", tmp_path)
    assert res.code == 0 and seen == {"host": "127.0.0.1", "port": 8000} and "warning" not in res.err.lower()
    res = run("serve", "--run", tmp_path, "--host", "0.0.0.0", "--port", "8123")
    assert res.code == 0 and seen["host"] == "0.0.0.0" and "anyone who can reach this machine" in res.err


def test_a_missing_web_extra_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_fastapi(name, *args, **kwargs):
        if name == "fastapi" or name.startswith("fastapi."):
            raise ImportError("No module named 'fastapi'", name="fastapi")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fastapi)
    res = run("serve", "--run", tmp_path, "--port", "8124")
    assert res.code != 0 and "pip install 'visae[web]'" in res.err and len(res.err_lines) == 1


@pytest.mark.parametrize("args, words", [(["--port", "0"], "port"), (["--port", "70000"], "port"), ([], "--run")])
def test_bad_flags_are_refused(tmp_path, args, words):
    res = run("serve", *(["--run", tmp_path] if args else []), *args)
    assert res.code != 0 and words in res.err


def test_demo_serve_opens_the_viewer_on_the_demo_run(tmp_path, monkeypatch):
    from visae import reference_study

    seen = {}
    monkeypatch.setattr(serve_mod, "serve", lambda cfg: seen.update(runs=cfg.runs, port=cfg.port, host=cfg.host))
    reference_study.serve_demo(reference_study.DemoConfig(out=tmp_path, serve=True, port=8125))
    assert seen == {"runs": [tmp_path / "sae"], "port": 8125, "host": "127.0.0.1"}
