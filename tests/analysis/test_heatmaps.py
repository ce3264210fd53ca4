"""Heatmap overlays: where the colour goes, the outline, the cache, a missing image."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from analysis_fixtures import D, GRID, SIZE, make_run, make_store, planted_tokens
from PIL import Image

from visae.analysis import AnalyzeConfig, Overlays, analyze
from visae.analysis.heatmaps import LUT, OUTLINE, render, top_cells
from visae.errors import VisaeError


def test_render_puts_heat_on_the_active_cell_and_outlines_it():
    view = np.full((SIZE, SIZE, 3), 100, np.uint8)
    map_hw = np.zeros((GRID, GRID), np.float32)
    map_hw[0, 3] = 2.0
    img = np.asarray(render(view, map_hw, vmax=2.0, size=64))
    assert img.shape == (64, 64, 3)
    hot, cold = img[8, 56].astype(int), img[56, 8].astype(int)  # centre of cell (0, 3) vs (3, 0)
    assert np.abs(hot - LUT[255]).sum() < np.abs(hot - LUT[0]).sum()
    assert hot.sum() > cold.sum() + 200
    assert tuple(img[0, 50]) == OUTLINE  # the outline runs along the cell's top edge
    assert top_cells(map_hw, vmax=2.0) == [(0, 3)] and top_cells(np.zeros((2, 2)), vmax=1.0) == []


def test_boxes_are_relative_to_the_latents_max_not_the_images():
    """A weak image of a strong latent: its own best cell is at 6% of the latent's max, so no box; a cell
    at 60% of the latent's max is boxed, one at 40% is not, whatever the image's own max."""
    view = np.full((SIZE, SIZE, 3), 100, np.uint8)
    weak = np.zeros((GRID, GRID), np.float32)
    weak[1, 1] = 0.06
    assert top_cells(weak, vmax=1.0) == []
    img = np.asarray(render(view, weak, vmax=1.0, size=64))
    assert not (img == OUTLINE).all(axis=2).any(), "a box was drawn on a cell at 6% of the latent's max"
    mixed = np.zeros((GRID, GRID), np.float32)
    mixed[0, 0], mixed[3, 3] = 0.6, 0.4
    assert top_cells(mixed, vmax=1.0) == [(0, 0)]
    img = np.asarray(render(view, mixed, vmax=1.0, size=64))
    assert tuple(img[0, 8]) == OUTLINE and tuple(img[48, 56]) != OUTLINE


def test_missing_image_renders_grey_placeholder():
    img = np.asarray(render(None, np.zeros((2, 2)), vmax=1.0, size=40))
    assert img.shape == (40, 40, 3)
    assert abs(float(np.median(img)) - 128 * 0.75 * 0.85) < 12  # dimmed grey under a weak overlay


@pytest.fixture
def folder_run(tmp_path, monkeypatch):
    """A folder: image source (the real one) behind a planted store, analysed."""
    monkeypatch.setenv("VISAE_QUIET", "1")
    labels = np.array([0, 1, 0, 1, 0, 1])
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    files = []
    for i, c in enumerate(labels):
        d = root / ("jet", "prop")[c]
        d.mkdir(parents=True, exist_ok=True)
        files.append(d / f"{i}.png")
    files.sort(key=lambda f: (f.parent.name, f.name))  # the folder source's order
    for f in files:
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(f)
    labels = np.array([0 if f.parent.name == "jet" else 1 for f in files])
    store = make_store(tmp_path / "store", f"folder:{root}", labels, tokens_=planted_tokens(len(labels), labels),
                       split="all")
    run = make_run(tmp_path / "run", store)
    analyze(AnalyzeConfig(run=run, top=3))
    return run, files


def test_overlays_cache_and_missing_file(folder_run):
    run, files = folder_run
    ov = Overlays(run, size=48)
    first = ov.png(0, "max", 0)
    assert first.parent == run / "heatmaps" / ov.db.meta["db_id"] and Image.open(first).size == (48, 48)
    # away from the heat the overlay shows the photo itself (dimmed)
    photo = Image.open(files[ov.db.top_examples(0, "max")[0]["image_index"]]).resize((48, 48), Image.BILINEAR)
    a = np.asarray(Image.open(first))[38:, 38:, 0].ravel().astype(float)
    b = np.asarray(photo)[38:, 38:, 0].ravel().astype(float)
    assert np.corrcoef(a, b)[0, 1] > 0.95
    mtime = first.stat().st_mtime_ns
    assert ov.png(0, "max", 0).stat().st_mtime_ns == mtime  # cached, not re-rendered
    top = ov.db.top_examples(0, "max")
    missing = files[top[1]["image_index"]]
    missing.unlink()
    grey = np.asarray(Image.open(ov.png(0, "max", 1)))
    assert grey.shape == (48, 48, 3)
    assert grey[..., 0].std() < np.asarray(Image.open(first))[..., 0].std()  # flat grey, not a photo
    with pytest.raises(VisaeError, match="no rank 7"):
        ov.png(0, "max", 7)
    ov.close()
    assert D == 6


def test_a_heatmap_cache_is_never_served_for_a_newer_db(folder_run, tmp_path, monkeypatch):
    """analyze, report (cache filled), analyze --force killed right after its DB is renamed into place
    (before it could delete the old cache), report: every heatmap is of the new DB."""
    from visae.analysis import db as db_mod
    from visae.reporting import ReportConfig, report

    run, _ = folder_run
    report(ReportConfig(run=run, out=tmp_path / "a.html", latents=2, images=2, thumb=32))
    old = list((run / "heatmaps").rglob("*.png"))
    assert old, "the report filled the cache"
    stale = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 0, 255)).save(stale, format="PNG")  # stands for a previous analysis's heatmap
    for f in old:
        f.write_bytes(stale.getvalue())

    real_write = db_mod.DBWriter.write

    def killed_after_rename(self, path):
        real_write(self, path)
        raise KeyboardInterrupt  # SIGKILL here: the new DB is in place, the old cache not yet deleted

    monkeypatch.setattr(db_mod.DBWriter, "write", killed_after_rename)
    with pytest.raises(KeyboardInterrupt):
        analyze(AnalyzeConfig(run=run, top=3, force=True))
    monkeypatch.undo()
    assert all(f.exists() for f in old), "the kill left the old cache behind"

    html = report(ReportConfig(run=run, out=tmp_path / "b.html", latents=2, images=2, thumb=32)).read_text()
    assert base64.b64encode(stale.getvalue()).decode() not in html, "a stale heatmap was served"
    assert not any(f.exists() for f in old), "the report pruned the old DB's cache"
    ov = Overlays(run, size=32)
    assert ov.png(0, "max", 0).read_bytes() != stale.getvalue() and ov.dir.name == ov.db.meta["db_id"]
    ov.close()
