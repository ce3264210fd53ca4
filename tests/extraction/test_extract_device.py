"""--device: a store begun on one device resumes on another, the device is no part of the resume
check, and a device that is not there is a one-line error before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from extract_fakes import FakeBackbone
from typer.testing import CliRunner

from visae.cli import app, main
from visae.device import resolve_device
from visae.extraction import ExtractConfig, extract
from visae.extraction import run as run_mod
from visae.extraction.outputs import fingerprint
from visae.store import verify
from visae.store.format import load_meta

LAYER = "encoder.stages.1"
N_TOKENS = 19 * 16  # 19 readable images x a 4 x 4 grid


@pytest.fixture(scope="module")
def convnext(tmp_path_factory) -> str:
    """A tiny random-init ConvNeXt saved locally: the real loader, the real device plumbing."""
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("convnext") / "model"
    ConvNextModel(ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=16)).save_pretrained(d)
    ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0).save_pretrained(d)
    return f"hf:{d}"


def args(model: str, folder, out, device: str, *more: str) -> list[str]:
    return ["extract", "--model", model, "--layer", LAYER, "--data", f"folder:{folder}", "--out", str(out),
            "--batch-size", "3", "--shard-tokens", "40", "--dtype", "fp32", "--device", device, *more]  # fmt: skip


def files(root) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file() and f.name != "visae.json"}


def test_a_store_begun_on_cpu_is_finished_with_device_auto(convnext, folder, tmp_path, monkeypatch):
    runner = CliRunner()
    straight = tmp_path / "straight"
    r = runner.invoke(app, args(convnext, folder, straight, "cpu"))
    assert r.exit_code == 0, r.output

    real, calls = run_mod._extract_batch, []

    def fail_on_third(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected")
        return real(*a, **kw)

    out = tmp_path / "s"
    monkeypatch.setattr(run_mod, "_extract_batch", fail_on_third)
    r = runner.invoke(app, args(convnext, folder, out, "cpu"))
    assert isinstance(r.exception, RuntimeError)
    assert "incomplete" in {p.kind for p in verify(out).problems}
    assert 0 < load_meta(out).n_tokens < N_TOKENS, "part of the store was committed before the failure"

    calls.clear()
    monkeypatch.setattr(run_mod, "_extract_batch", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    r = runner.invoke(app, args(convnext, folder, out, "auto", "--resume"))
    assert r.exit_code == 0, r.output
    assert 0 < len(calls) < 7, "resumed after the committed shards, not from scratch"
    assert not verify(out).problems
    if resolve_device("auto").type == "cpu":
        assert files(out) == files(straight)
    else:  # finished on a GPU under bf16 autocast: same tokens up to bf16 rounding of the forward
        from visae.store import Store

        a, b = Store(straight), Store(out)
        assert len(a) == len(b) == N_TOKENS
        torch.testing.assert_close(b.get(list(range(N_TOKENS))), a.get(list(range(N_TOKENS))), atol=0.1, rtol=0.05)


def test_the_resume_fingerprint_leaves_the_device_out(folder, tmp_path):
    def fp(device: str) -> dict:
        cfg = ExtractConfig(model="fake:tiny", layers=["conv2"], data=f"folder:{folder}", out=tmp_path / "s", device=device)
        return fingerprint(cfg, "conv2", {"size": 16}, 40)

    assert fp("cpu") == fp("auto") == fp("cuda:3")
    assert "device" not in fp("cuda:3") and "cuda" not in json.dumps(fp("cuda:3"))
    store = extract(ExtractConfig(model="fake:tiny", layers=["conv2"], data=f"folder:{folder}", out=tmp_path / "s",
                                  device="cpu"), backbone=FakeBackbone())  # fmt: skip
    assert "device" not in json.loads((store.path / "metadata.json").read_text())["config"]


@pytest.mark.parametrize(
    "device, message",
    [
        ("gpu", "unknown device 'gpu'"),
        pytest.param("cuda", "torch sees no GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    ],
)
def test_a_device_that_is_not_there_is_a_one_line_error(convnext, folder, tmp_path, capsys, device, message):
    with pytest.raises(SystemExit) as e:
        main(args(convnext, folder, tmp_path / "s", device))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
