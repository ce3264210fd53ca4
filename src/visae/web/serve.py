"""``visae serve``: run the viewer's web server (FastAPI under uvicorn) until interrupted."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from visae.errors import VisaeError
from visae.progress import info, warn
from visae.web.config import ServeConfig

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken, before any model is loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise VisaeError(f"cannot listen on {host}:{port} ({e.strerror})", "pass another --port (or stop what uses it)") from None


def require_web() -> None:
    """Refuse, in one line, an install without the web extra."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise VisaeError(f"visae serve needs the web extra ({e.name} is not installed)", "pip install 'visae[web]'") from None


def app_for(cfg: ServeConfig) -> Any:
    """The FastAPI app of ``cfg`` (the web extra is needed)."""
    try:
        from visae.web.app import create_app
    except ImportError as e:
        raise VisaeError(f"visae serve needs the web extra ({e.name} is not installed)", "pip install 'visae[web]'") from None
    return create_app(cfg)


def serve(cfg: ServeConfig) -> None:
    """Serve until Ctrl-C."""
    require_web()
    import uvicorn
    if not loopback(cfg.host):
        warn(f"binding to {cfg.host}: anyone who can reach this machine on port {cfg.port} can browse these runs and run the "
             "model; the viewer has no login (use the default 127.0.0.1 to keep it to this machine)")  # fmt: skip
    check_port(cfg.host, cfg.port)
    app = app_for(cfg)
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    info(f"visae viewer: http://{shown}:{cfg.port}/  (API: /docs; Ctrl-C stops it)")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
