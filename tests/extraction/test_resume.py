"""An extraction killed part-way is flagged by verify and, resumed, equals an uninterrupted run bit for bit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from extract_fakes import FakeBackbone
from typer.testing import CliRunner

from visae.cli import app
from visae.extraction import ExtractConfig, extract
from visae.store import verify

HERE = Path(__file__).parent


def cfg(folder, out, **kw) -> ExtractConfig:
    base = dict(model="fake:tiny", layers=["conv1", "conv2"], data=f"folder:{folder}", out=out, batch_size=3,
                shard_tokens=40)  # fmt: skip
    return ExtractConfig.build(**{**base, **kw})


def files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file() and f.name != "visae.json"}


@pytest.fixture(scope="module")
def uninterrupted(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "s"
    extract(cfg(folder, out), backbone=FakeBackbone())
    return out


def test_injected_failure_then_resume_is_bit_identical(folder, uninterrupted, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError, match="injected"):
        extract(cfg(folder, out), backbone=FakeBackbone(fail_after=4))
    for layer in ("conv1", "conv2"):
        report = verify(out / layer)
        assert "incomplete" in {p.kind for p in report.problems} and not report.damaged
    assert verify(out / "conv1").meta.n_tokens < 19 * 64
    bb = FakeBackbone()
    extract(cfg(folder, out, resume=True), backbone=bb)
    assert 0 < bb.calls < 7, "resumed from the last committed shard, not from scratch"
    assert files(out) == files(uninterrupted)


def test_sigkill_mid_extraction_then_cli_resume(folder, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "s"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from extract_fakes import FakeBackbone\n"
        "from visae.extraction import ExtractConfig, extract\n"
        "extract(ExtractConfig.model_validate_json(sys.argv[2]), backbone=FakeBackbone(delay=0.3))\n"
    )
    env = {**os.environ, "VISAE_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(HERE), cfg(folder, out).model_dump_json()], env=env)
    meta = out / "conv1" / "metadata.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.is_file() and json.loads(meta.read_text())["shards"]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    runner = CliRunner()
    r = runner.invoke(app, ["store", "verify", str(out / "conv1")])
    assert r.exit_code == 1 and "--resume" in r.output

    monkeypatch.setattr("visae.extraction.run.load_backbone", lambda c: FakeBackbone())
    args = ["extract", "--model", "fake:tiny", "--layer", "conv1", "--layer", "conv2", "--data", f"folder:{folder}",
            "--out", str(out), "--batch-size", "3", "--shard-tokens", "40", "--resume"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "conv2" in r.output and runner.invoke(app, ["store", "verify", str(out / "conv2")]).exit_code == 0
    assert files(out) == files(uninterrupted)


def test_a_resume_over_other_images_at_the_same_path_is_refused(tmp_path):
    from extract_fakes import make_folder

    from visae.errors import VisaeError

    imgs, out = make_folder(tmp_path / "imgs"), tmp_path / "s"
    with pytest.raises(RuntimeError, match="injected"):
        extract(cfg(imgs, out), backbone=FakeBackbone(fail_after=2))
    shutil.rmtree(imgs)
    make_folder(imgs, classes=("a", "c"))  # as many images, under the same path: another class
    with pytest.raises(VisaeError, match=f"the images of folder:{imgs} are not the ones it began with"):
        extract(cfg(imgs, out, resume=True), backbone=FakeBackbone())
