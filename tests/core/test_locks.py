"""One writer per output directory: the lock, what --force may delete, leftover temporaries, file modes.

The lock is a property of processes, so these tests use real ones: a helper process holds a
lock while this one tries to take it; and the end-to-end tests run `visae extract` and
`visae train` twice on one --out, the first paused deterministically in the middle of its
writes (``VISAE_TEST_PAUSE``), the second refused.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from visae import atomic
from visae.artifact import clear, prepare_out, read_marker, write_marker
from visae.errors import VisaeError
from visae.lock import LOCK_NAME, holds, locked

VISAE = str(Path(sys.executable).parent / "visae")
HOLD = (
    "import sys\n"
    "from visae.lock import acquire\n"
    "acquire(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


class Holder:
    """A separate process holding the lock of ``path`` until it is stopped (or killed)."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout.readline().strip() == "locked"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def test_a_second_process_is_refused_with_the_holders_pid_and_a_killed_holder_blocks_nothing(tmp_path):
    out = tmp_path / "out"
    holder = Holder(out)
    try:
        with pytest.raises(VisaeError) as e:
            with locked(out):
                pass
        msg = str(e.value)
        assert f"{out} is in use by another visae process (PID {holder.proc.pid}: python -c" in msg
        assert "wait for it to finish" in msg and "\n" not in msg
    finally:
        holder.kill()
    with locked(out):  # the OS released the killed holder's lock
        assert holds(out)
        lines = (out / LOCK_NAME).read_text().splitlines()
        assert lines[0] == str(os.getpid())
    assert not holds(out) and not (out / LOCK_NAME).exists(), "deleted on release: a finished artifact has none"


def test_the_lock_is_reentrant_and_a_refused_stage_leaves_no_new_folder(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(VisaeError, match="bad input"):
        with locked(out):
            with locked(out):  # a stage calling another on the same folder
                assert holds(out)
            assert holds(out)
            raise VisaeError("bad input")
    assert not (tmp_path / "a").exists(), "the folders the lock created are gone again"
    (tmp_path / "file").write_text("x")
    with pytest.raises(VisaeError, match="is a file, not a directory"):
        with locked(tmp_path / "file"):
            pass


def _child(ready, event) -> None:
    ready.set()
    event.wait(30)


def test_forked_workers_do_not_keep_the_lock(tmp_path):
    ctx = mp.get_context("fork")
    ready, event = ctx.Event(), ctx.Event()
    with locked(tmp_path):
        child = ctx.Process(target=_child, args=(ready, event))
        child.start()
        assert ready.wait(30)  # the child runs: its fork hooks are done
    try:
        with locked(tmp_path):  # a new descriptor: refused if the live child still held the old one
            pass
    finally:
        event.set()
        child.join()


def test_force_never_wipes_a_folder_that_another_process_is_writing(tmp_path):
    root = tmp_path / "set"
    (root / "conv1").mkdir(parents=True)
    write_marker(root, "store-set")
    (root / "conv1" / "shard_000000.npy").write_bytes(b"data")
    holder = Holder(root / "conv1")  # e.g. `visae extract --out set/conv1` running
    try:
        with locked(root), pytest.raises(VisaeError, match=f"conv1 is in use by another visae process \\(PID {holder.proc.pid}"):
            prepare_out(root, "store-set", force=True)
        assert (root / "conv1" / "shard_000000.npy").read_bytes() == b"data"
    finally:
        holder.stop()
    with locked(root):
        prepare_out(root, "store-set", force=True)
        assert [p.name for p in root.iterdir()] == [LOCK_NAME], "wiped, all but the lock file"
    assert list(root.iterdir()) == []


def test_a_stage_removes_leftover_temporaries_of_its_own_artifact_only(tmp_path):
    run = tmp_path / "run"
    sae = run / "saes" / "topk"
    sae.mkdir(parents=True)
    write_marker(run, "sae-run")
    left = [run / ".metrics.jsonl.x1.tmp", sae / ".sae_weights.safetensors.x2.tmp", run / ".features.sqlite.x3.tmp-journal"]
    for f in left:
        f.write_bytes(b"partial")
    (run / ".save-x4.tmp").mkdir()  # the classifier's temporary save folder
    (run / ".save-x4.tmp" / "model.safetensors").write_bytes(b"partial")
    kept = [run / "metrics.jsonl", sae / "cfg.json", run / ".hidden", run / "notes.tmp"]
    for f in kept:
        f.write_bytes(b"mine")
    other = run / "store"  # a folder with a lock file: a live writer may be using it
    other.mkdir()
    (other / LOCK_NAME).write_text("")
    (other / ".shard.x5.tmp").write_bytes(b"maybe live")
    with locked(run):
        assert all(f.exists() for f in left), "the lock alone deletes nothing"
        prepare_out(run, "sae-run", resume=True)  # the stage owns the folder: its leftovers go
        assert not any(f.exists() for f in left) and not (run / ".save-x4.tmp").exists()
        assert all(f.read_bytes() == b"mine" for f in kept)
        assert (other / ".shard.x5.tmp").exists()
    home = tmp_path / "home"  # not visae's: refused, nothing deleted
    home.mkdir()
    (home / ".editor.x6.tmp").write_text("theirs")
    (home / "thesis.tex").write_text("years of work")
    with locked(home), pytest.raises(VisaeError, match="did not write"):
        prepare_out(home, "store", force=True)
    assert (home / ".editor.x6.tmp").exists()


def test_a_lock_file_and_temporaries_are_disposable_but_a_demo_refuses_foreign_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("")
    (out / ".x.abc.tmp").write_text("partial")
    with locked(out):
        prepare_out(out, "store", force=True)  # nothing but visae's own leftovers: no refusal
        write_marker(out, "store")
        clear(out)
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]
    assert list(out.iterdir()) == []


def test_atomic_writes_give_every_file_the_usual_mode(tmp_path):
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        assert atomic.umask() == 0o022
        atomic.write_with(tmp_path / "w.safetensors", lambda t: save_file({"a": torch.zeros(2)}, str(t)))
        atomic.write_with(tmp_path / "s.pt", lambda t: torch.save({"a": 1}, t))
        atomic.write_json(tmp_path / "m.json", {})
        os.umask(0o027)
        atomic.write_json(tmp_path / "g.json", {})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"w.safetensors": 0o644, "s.pt": 0o644, "m.json": 0o644, "g.json": 0o640}


# ---------------------------------------------------------------- two real writers on one --out


def _tiny_inputs(root: Path) -> tuple[Path, Path]:
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    torch.manual_seed(0)
    model = root / "convnext"
    ConvNextModel(ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=16)).save_pretrained(model)
    ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0).save_pretrained(model)
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "imgs" / c).mkdir(parents=True)
        for k in range(10):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "imgs" / c / f"{k}.png")
    return model, root / "imgs"


def _race(first: list[str], second: list[str], gate: Path, pause_at: int) -> subprocess.CompletedProcess:
    """Run ``first`` paused at its ``pause_at``-th atomic write, then ``second`` to completion, then let the
    first finish; returns the second's result (the first must succeed)."""
    env = {**os.environ, "VISAE_QUIET": "1"}
    proc = subprocess.Popen([VISAE, *first], env={**env, "VISAE_TEST_PAUSE": f"{pause_at}:{gate}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        waiting = Path(f"{gate}.waiting")
        deadline = time.monotonic() + 180
        while not waiting.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting.exists(), f"the first writer never paused: {proc.poll()} {proc.stdout.read() if proc.poll() is not None else ''}"
        second_res = subprocess.run([VISAE, *second], env=env, capture_output=True, text=True, timeout=300)
    finally:
        gate.write_text("go")
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    second_res.first_pid = proc.pid
    return second_res


def test_two_concurrent_writers_to_one_output_directory(tmp_path):
    model, imgs = _tiny_inputs(tmp_path)
    store = tmp_path / "store"
    extract = ["extract", "--model", f"hf:{model}", "--layer", "encoder.stages.1", "--data", f"folder:{imgs}",
               "--out", str(store), "--batch-size", "2", "--shard-tokens", "16", "--dtype", "fp32", "--device", "cpu"]
    # the first extraction pauses after its marker, metadata and first shard files (a shard not yet committed)
    r = _race(extract, extract + ["--force"], tmp_path / "gate1", pause_at=5)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert f"{store} is in use by another visae process (PID {r.first_pid}: visae extract" in r.stderr
    assert CliRunner().invoke(_app(), ["store", "verify", str(store)]).exit_code == 0

    run = tmp_path / "run"
    train = ["train", "--store", str(store), "--out", str(run), "--arch", "topk", "--k", "2", "--expansion", "2",
             "--batch-size", "16", "--training-tokens", "160", "--device", "cpu"]
    r = _race(train, train + ["--force"], tmp_path / "gate2", pause_at=3)  # paused writing the run's marker
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert f"{run} is in use by another visae process (PID {r.first_pid}: visae train" in r.stderr
    marker = read_marker(run)
    assert marker["complete"] is True and [p.name for p in (run / "saes").iterdir()] == marker["saes"]
    assert CliRunner().invoke(_app(), ["store", "verify", str(store)]).exit_code == 0


def _app():
    from visae.cli import app

    return app
