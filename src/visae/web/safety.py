"""The one place that turns names into files, and the request body limit.

Everything the API serves is found by ids (run index, latent, image index, ranking); the only
names are the plots', looked up in a fixed allow-list and resolved inside the run directory
(``resolve()`` follows symlinks, so a link that leads out of the run is refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOTS: dict[str, str] = {
    "curves": "plots/curves.png",
    "density": "plots/density-*.png",
    "suppression": "steer/suppression.png",
    "dose": "steer/dose.png",
    "ablation": "steer/ablation.png",
    "segmentation": "steer/segmentation.png",
}
"""Plot name -> its file under the run (a glob with one '*' matches exactly one file)."""


def inside(run: Path, rel: str) -> Path | None:
    """``run / rel`` when it is a regular file whose real path lies inside the run's real path, else None."""
    root = run.resolve()
    try:
        path = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if path.is_relative_to(root) and path.is_file() else None


def plot_path(run: Path, name: str) -> Path | None:
    """The file of the plot ``name`` of ``run``, or None (not an allowed name, absent, or outside the run)."""
    rel = PLOTS.get(name)
    if rel is None:
        return None
    if "*" in rel:
        folder, pattern = rel.rsplit("/", 1)
        found = sorted((run / folder).glob(pattern)) if (run / folder).is_dir() else []
        if len(found) != 1:
            return None
        rel = f"{folder}/{found[0].name}"
    return inside(run, rel)


def plot_names(run: Path) -> list[str]:
    """The allowed plots ``run`` has."""
    return [name for name in PLOTS if plot_path(run, name) is not None]


def read_json(run: Path, rel: str) -> Any:
    """A JSON file of the run (inside it, by the same check), or None when absent or unreadable."""
    path = inside(run, rel)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class BodyLimit:
    """ASGI middleware: a request body over ``max_body`` bytes gets 413, by its Content-Length or as it streams."""

    def __init__(self, app: Any, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    await _refuse(send, 400, "the Content-Length header is not a number; send a valid request")
                    return
                if size > self.max_body:
                    await _refuse(send, 413, self._too_big())
                    return
        seen = 0
        refused = False

        async def limited() -> dict[str, Any]:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    refused = True
                    raise _TooBig()
            return message

        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:  # the app answered a body it could not read (FastAPI: 400): answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _refuse(send, 413, self._too_big())
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked_send)
        except Exception:
            if refused and not started:
                await _refuse(send, 413, self._too_big())
            elif not refused:
                raise

    def _too_big(self) -> str:
        return f"the request body is over {self.max_body} bytes; send a smaller one"


class _TooBig(Exception):
    pass


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
