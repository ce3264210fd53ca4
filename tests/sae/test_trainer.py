"""Training: planted atoms are recovered; resume is exact; bad input stops cleanly."""

from __future__ import annotations

import json

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from visae.errors import VisaeError
from visae.sae import check_matches, create_sae, SAESpec
from visae.sae.checkpoint import load_checkpoint
from visae.sae.importers import load_sae
from visae.sae.source import TensorSource
from visae.sae.train_config import TrainConfig
from visae.sae.trainer import read_metrics, train

from sae_fixtures import planted


def _cfg(tmp_path, **kw):
    base = dict(store=str(tmp_path / "store"), out=str(tmp_path / "run"), batch_size=128, tokens=128 * 40,
                checkpoint_every=128 * 10, log_every=5, dead_tokens=2000, median_sample=512,
                saes=[dict(arch="topk", k=4, d_sae=64, lr=3e-3)])
    base.update(kw)
    return TrainConfig.build(**base)


class Interrupting(TensorSource):
    """Raises KeyboardInterrupt after ``n`` batches (a kill mid-run)."""

    def __init__(self, acts, n):
        super().__init__(acts)
        self.n = n

    def batches(self, *a, **kw):
        for i, b in enumerate(super().batches(*a, **kw)):
            if i == self.n:
                raise KeyboardInterrupt
            yield b


class Poisoned(TensorSource):
    """Yields a NaN batch as its ``n``-th batch."""

    def __init__(self, acts, n):
        super().__init__(acts)
        self.n = n

    def batches(self, *a, start=0, **kw):
        for i, b in enumerate(super().batches(*a, start=start, **kw)):
            yield b * float("nan") if i + start // a[0] == self.n else b


def test_topk_recovers_planted_atoms(tmp_path, planted_source):
    source, atoms_SD = planted_source
    cfg = _cfg(tmp_path, batch_size=256, tokens=256 * 300, checkpoint_every=10**9, log_every=50,
               dead_tokens=5000, saes=[dict(arch="topk", k=4, d_sae=128, lr=4e-3)])
    run = train(cfg, source=source)
    sae = run.load()
    W = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=1, keepdim=True)
    cos = (W @ atoms_SD.T).abs().numpy()
    rows, cols = linear_sum_assignment(-cos)
    assert cos[rows, cols].mean() >= 0.9
    last = [r for r in run.metrics() if r["split"] == "train"][-1]
    assert {"loss", "nmse", "l0", "dead_pct", "dense_pct", "lr", "tokens_per_s"} <= set(last)
    heldout = run.metrics()[-1]
    assert heldout["split"] == "heldout" and heldout["step"] == last["step"]
    assert 0 < heldout["nmse"] < 0.5 and heldout["l0"] <= 4 and heldout["eval_tokens"] > 0
    assert last["nmse"] < 0.2 and last["l0"] == pytest.approx(4.0)
    # the saved SAE takes raw activations (normalisation folded in) and records its origin
    x = source.acts_ND[:512]
    nmse = (sae(x).recon_BD - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert nmse < 0.25
    cfg_json = json.loads((run.path / "saes" / run.names[0] / "cfg.json").read_text())
    assert cfg_json["visae"]["layer"] == "blocks.1" and cfg_json["visae"]["normalization"]["folded"]
    assert (run.path / "plots" / "curves.png").is_file()


def test_resume_after_kill_reaches_the_same_weights(tmp_path, small_source):
    acts = small_source.acts_ND
    whole = train(_cfg(tmp_path, out=str(tmp_path / "a")), source=TensorSource(acts))
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, out=str(tmp_path / "b")), source=Interrupting(acts, 25))
    assert load_checkpoint(tmp_path / "b")["step"] == 20
    # rerunning the same command continues the interrupted run (as --resume does), like an interrupted extraction
    resumed = train(_cfg(tmp_path, out=str(tmp_path / "b")), source=TensorSource(acts))
    a, b = whole.load(), resumed.load()
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name
    for split in ("train", "heldout"):  # no duplicated lines after resume
        steps = [r["step"] for r in resumed.metrics() if r["split"] == split]
        assert steps == sorted(set(steps)) and steps[-1] == 40, split
    assert [r["nmse"] for r in resumed.metrics() if r["split"] == "heldout"] == [
        r["nmse"] for r in whole.metrics() if r["split"] == "heldout"], "held-out evaluation is part of the exact resume"


def test_resume_refuses_changed_config_and_other_d(tmp_path, small_source):
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path), source=Interrupting(small_source.acts_ND, 12))
    changed = _cfg(tmp_path, resume=True, saes=[dict(arch="topk", k=4, d_sae=64, lr=1e-3)])
    with pytest.raises(VisaeError, match=r"config changed \(saes\)"):
        train(changed, source=small_source)
    with pytest.raises(VisaeError, match="takes d_in=16 but the store holds d=8"):
        train(_cfg(tmp_path, resume=True), source=TensorSource(torch.randn(2048, 8)))
    with pytest.raises(VisaeError, match="already holds a visae sae-run; pass --force to replace it or --resume"):
        train(changed.model_copy(update={"resume": False}), source=small_source)  # other settings: not continued


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, small_source):
    with pytest.raises(VisaeError, match="loss became nan at step 15"):
        train(_cfg(tmp_path), source=Poisoned(small_source.acts_ND, 15))
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 10
    for t in state["members"]["topk-k4-s64"]["sae"].values():
        assert torch.isfinite(t).all()


def test_sae_with_other_d_in_is_refused():
    sae = create_sae(SAESpec(arch="topk", d_in=16, d_sae=32, k=2))
    check_matches(sae, 16)
    with pytest.raises(VisaeError, match="d_in=16 .* d=768"):
        check_matches(sae, 768)


class Counting(TensorSource):
    def __init__(self, acts):
        super().__init__(acts)
        self.served = 0

    def batches(self, *a, **kw):
        for b in super().batches(*a, **kw):
            self.served += 1
            yield b


def test_sweep_feeds_every_batch_to_all_saes(tmp_path):
    source = Counting(planted(n=4096, d=16, s=64, k=3)[0])
    saes = [dict(arch=a, k=4, d_sae=64) for a in ("topk", "batchtopk", "jumprelu", "matryoshka")]
    saes.append(dict(arch="relu", d_sae=64, sparsity_coeff=0.5))  # L1 weight for this tiny D
    run = train(_cfg(tmp_path, saes=saes, tokens=128 * 30, dtype="bf16", holdout=0), source=source)
    assert source.served == 30  # one pass, not one per SAE
    assert sorted(run.names) == sorted(["relu-s64", "topk-k4-s64", "batchtopk-k4-s64", "jumprelu-s64", "matryoshka-k4-s64"])
    by_sae = {}
    for r in run.metrics():
        by_sae.setdefault(r["sae"], []).append(r["nmse"])
    for name, nmse in by_sae.items():
        assert nmse[-1] < nmse[0], name
    with pytest.raises(VisaeError, match="holds several SAEs"):
        load_sae(run.path)
    assert load_sae(run.path, "jumprelu-s64").spec.arch == "jumprelu"


def test_plots_are_skipped_with_a_note_without_matplotlib(tmp_path, monkeypatch, capsys):
    import sys

    from visae.sae.plots import plot_run

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setenv("VISAE_QUIET", "0")
    assert plot_run(tmp_path) == []
    assert "matplotlib is not installed" in capsys.readouterr().err


def _comparable(records):
    """Metric records without the wall-clock field."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]


def test_resume_before_first_checkpoint_restarts_without_duplicate_lines(tmp_path, small_source):
    acts = small_source.acts_ND
    whole = train(_cfg(tmp_path, out=str(tmp_path / "a")), source=TensorSource(acts))
    with pytest.raises(KeyboardInterrupt):  # killed at step 7: metric lines written, no checkpoint yet (step 10)
        train(_cfg(tmp_path, out=str(tmp_path / "b")), source=Interrupting(acts, 7))
    assert load_checkpoint(tmp_path / "b") is None
    assert 5 in [r["step"] for r in read_metrics(tmp_path / "b")]
    resumed = train(_cfg(tmp_path, out=str(tmp_path / "b"), resume=True), source=TensorSource(acts))
    assert _comparable(resumed.metrics()) == _comparable(whole.metrics())  # each line once, as an uninterrupted run


def test_torn_metrics_line_is_tolerated_on_read_and_on_resume(tmp_path, small_source, monkeypatch, capsys):
    acts = small_source.acts_ND
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path), source=Interrupting(acts, 25))
    run = tmp_path / "run"
    good = read_metrics(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "tokens": 3200, "sae": "topk-k4-s64", "split": "tr')  # killed mid-write
    monkeypatch.setenv("VISAE_QUIET", "0")
    capsys.readouterr()
    assert read_metrics(run) == good
    err = "".join(capsys.readouterr().err.split())  # rich may wrap a long path anywhere
    assert err.count("metrics.jsonl") == 1 and "half-writtenlastline" in err and "Error" not in err
    resumed = train(_cfg(tmp_path, resume=True), source=TensorSource(acts))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON again
    for split in {r["split"] for r in records}:
        steps = [r["step"] for r in records if r["split"] == split]
        assert steps == sorted(set(steps)) and steps[-1] == 40, split
    assert _comparable(records) == _comparable(resumed.metrics())
