"""The web tests share one small analysed run of the synthetic aircraft (the steering tests' run) with a
small steer-eval on it, and a TestClient of ``visae serve``'s app over it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "steering"))

from run_fixture import build_run  # noqa: E402
from web_helpers import snapshot  # noqa: E402


@pytest.fixture(scope="session")
def web_run(tmp_path_factory) -> dict[str, object]:
    """{run, data, ..., snapshot}: the analysed and steer-evaluated run, and its file list before any request."""
    import visae

    paths = build_run(tmp_path_factory.mktemp("web_run"))
    visae.steer_eval(run=paths["run"], n_images=32, per_group=2, random_latents=2, per_latent=16, directions=2, draws=2,
                     probe_images=100, device="cpu")  # fmt: skip
    return {**paths, "snapshot": snapshot(paths["run"])}


@pytest.fixture(scope="session")
def app(web_run):
    from visae.web.app import create_app
    from visae.web.config import ServeConfig

    return create_app(ServeConfig(runs=[web_run["run"]], device="cpu", probe_images=100))


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c
