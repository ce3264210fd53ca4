"""CLI of the web viewer: ``visae serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from visae.cli.app import app
from visae.cli.options import build, option
from visae.web.config import ServeConfig as S


@app.command("serve")
def serve(
    run: Optional[list[Path]] = option(S, "runs", "--run"),
    host: Optional[str] = option(S, "host"),
    port: Optional[int] = option(S, "port"),
    device: Optional[str] = option(S, "device"),
    max_body: Optional[int] = option(S, "max_body"),
    probe_images: Optional[int] = option(S, "probe_images"),
) -> None:
    """Browse features and steer the model live in a web browser (needs the web extra: pip install 'visae\\[web]').

    Serves the analysed runs at http://127.0.0.1:8000/ (this machine only, unless --host says otherwise): the feature list (search, filters, sorts), feature pages (top images with heatmaps, density, classes, part, labels, eval and steering results), image pages (click a patch for its strongest latents), a steering playground (sliders that set latents to a multiple of their max activation, with class probabilities, margin and heatmaps before and after, and the segmentation probe's prediction where the dataset has part masks) and the run overview. Read-only over the runs. The JSON API is documented at /docs (docs/web.md).
    """
    from visae.web.serve import serve as run_serve

    run_serve(build(S, None, runs=run, host=host, port=port, device=device, max_body=max_body, probe_images=probe_images))
