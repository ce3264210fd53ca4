"""``create_app(cfg)``: the FastAPI app of ``visae serve``: the JSON API under /api, the front end at /.

The app only reads: the feature DBs (read-only connections), the runs' JSON and PNG files by a fixed
allow-list, the datasets behind the stores and the model. Heatmaps and images are rendered in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visae.errors import VisaeError
from visae.web.config import ServeConfig

STATIC = Path(__file__).parent / "static"
LOCAL_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]", "testserver"]
"""Host headers a loopback-bound server answers (testserver: Starlette's TestClient); any other is refused
with 400, so a web page cannot read the API by pointing its own host name at 127.0.0.1 (DNS rebinding)."""


def create_app(cfg: ServeConfig) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles

    from visae.web.routes import BadInput, make_router
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from visae.web.safety import BodyLimit
    from visae.web.serve import loopback
    from visae.web.state import NotFound, RunState

    states = [RunState(i, Path(p), cfg.device, cfg.probe_images) for i, p in enumerate(cfg.runs)]
    app = FastAPI(title="visae", summary="Browse and steer the features of sparse autoencoders on vision models.",
                  version="1")  # fmt: skip
    app.state.runs = states

    @app.exception_handler(VisaeError)
    async def visae_error(request: Request, exc: VisaeError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 422 if isinstance(exc, BadInput) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)

    app.include_router(make_router(states))
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    app.add_middleware(BodyLimit, max_body=cfg.max_body)
    if loopback(cfg.host):  # a page elsewhere cannot reach this server by rebinding its own name to 127.0.0.1
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_NAMES)
    return app


def validation_detail(errors: Any) -> str:
    """FastAPI's validation errors as one line: 'query.limit: Input should be ...; ...; fix these values (see /docs)'."""
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body" or len(err.get("loc", ())) == 1)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) + "; fix these values (the API is documented at /docs)"
