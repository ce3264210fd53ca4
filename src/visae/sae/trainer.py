"""``train(cfg) -> Run``: train one or several SAEs from one pass over a token source.

Each batch is normalised once (``(x - mean) * scale``, store statistics) and fed to every
SAE of the run. Checkpoints are atomic and carry the data position, so ``--resume``
after a kill reaches the same weights as an uninterrupted run. At the end each SAE is
saved, normalisation folded in, as a SAELens folder ``RUN/saes/NAME``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from visae.artifact import prepare_out, write_marker
from visae.atomic import write_json, write_text, write_with
from visae.errors import VisaeError
from visae.progress import info, make_progress
from visae.sae.base import SAE, create_sae
from visae.sae.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from visae.sae.importers import RUN_KIND, RUN_SAES, load_sae, run_sae_dirs
from visae.sae.init import init_b_dec, sample_tokens
from visae.sae.member import Member
from visae.sae.saelens import save_saelens
from visae.sae.source import TokenSource
from visae.sae.train_config import TrainConfig

CONFIG_FILE = "train.json"
METRICS_FILE = "metrics.jsonl"
BULKY_STORE_FIELDS = {"shards", "skipped", "stats", "config"}
"""Store metadata left out of cfg.json (per-shard tables; the store keeps them)."""


@dataclass
class Run:
    """A finished (or resumable) training run directory."""

    path: Path
    names: list[str] = field(default_factory=list)

    def load(self, name: str | None = None) -> SAE:
        return load_sae(self.path, name)

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def open_source(store: str) -> TokenSource:
    try:
        from visae.store import Store  # type: ignore[attr-defined]
    except ImportError:
        raise VisaeError("the activation store reader (visae.store) is not installed", "reinstall visae") from None
    return Store(store)


def train(cfg: TrainConfig, source: TokenSource | None = None) -> Run:
    """Train the SAEs of ``cfg`` on ``source`` (default: the store at ``cfg.store``)."""
    source = source if source is not None else open_source(cfg.store)
    tokens = cfg.tokens or len(source)
    total_steps = tokens // cfg.batch_size
    if cfg.batch_size > len(source) or total_steps == 0:
        raise VisaeError(
            f"{tokens} training tokens and a store of {len(source)} make no full batch of {cfg.batch_size}",
            "lower --batch-size or raise --tokens",
        )
    out = prepare_out(cfg.out, RUN_KIND, force=cfg.force, resume=cfg.resume)
    state = _check_resume(out, cfg) if cfg.resume else None
    device = _device(cfg.device)
    mean_D, scale = _normalisation(source, cfg, device)
    torch.manual_seed(cfg.seed)
    members = [Member(hp, create_sae(hp.spec(source.d)).to(device), cfg, total_steps) for hp in cfg.saes]
    if state is None:
        write_json(out / CONFIG_FILE, cfg.model_dump(mode="json"))
        write_marker(out, RUN_KIND, saes=[m.name for m in members], complete=False)
        _init(members, source, cfg, mean_D, scale)
        start = 0
    else:
        start = _restore(members, state, source, out)
    _loop(members, source, cfg, out, start, total_steps, mean_D, scale)
    _finish(members, source, cfg, out, mean_D, scale, total_steps)
    return Run(out, [m.name for m in members])


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise VisaeError(f"unknown device '{spec}'", "use auto, cpu or cuda[:i]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VisaeError("--device cuda was asked for but no GPU is available", "use --device cpu")
    return dev


def _normalisation(source: TokenSource, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, float]:
    if not cfg.normalize:
        return torch.zeros(source.d, device=device), 1.0
    mean_D = torch.as_tensor(source.mean_D, dtype=torch.float32).to(device)
    scale = float(source.scale)
    if not np.isfinite(scale) or scale <= 0 or not bool(torch.isfinite(mean_D).all()):
        raise VisaeError("the store's statistics (mean, scale) are not finite", "recompute them or pass normalize=false")
    return mean_D, scale


def _init(members: list[Member], source: TokenSource, cfg: TrainConfig, mean_D, scale) -> None:
    sample = sample_tokens(source, cfg.median_sample, cfg.seed).to(mean_D.device)
    sample = (sample - mean_D) * scale
    if not bool(torch.isfinite(sample).all()):
        raise VisaeError("the store holds NaN or inf activations", "re-extract the store or drop the bad shards")
    for m in members:
        init_b_dec(m.sae, sample)


def _check_resume(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    f = out / CONFIG_FILE
    if not f.is_file():
        return None
    saved = TrainConfig.build(**json.loads(f.read_text()))
    old, new = saved.fingerprint(), cfg.fingerprint()
    changed = sorted(k for k in new if old.get(k) != new.get(k))
    if changed:
        raise VisaeError(
            f"cannot resume {out}: the config changed ({', '.join(changed)})",
            "rerun with the original settings, or pass --force to start a new run",
        )
    return load_checkpoint(out) or None


def _restore(members: list[Member], state: dict[str, Any], source: TokenSource, out: Path) -> int:
    for m in members:
        saved = state["members"][m.name]
        d_saved = saved["sae"]["b_dec"].shape[0]
        if d_saved != source.d:
            raise VisaeError(
                f"cannot resume {out}: its SAE '{m.name}' takes d_in={d_saved} but the store holds d={source.d}",
                "resume against the store the run was started on, or pass --force",
            )
        m.load_state(saved)
    restore_rng(state)
    step = int(state["step"])
    _truncate_metrics(out, step)
    info(f"resuming {out} at step {step} ({state['tokens']} tokens)")
    return step


def _loop(members, source, cfg, out, start, total_steps, mean_D, scale) -> None:
    batches = source.batches(
        cfg.batch_size, shuffle=True, seed=cfg.seed, dtype=torch.float32, start=start * cfg.batch_size, epochs=None
    )
    ckpt_steps = max(1, cfg.checkpoint_every // cfg.batch_size)
    with make_progress() as bar:
        task = bar.add_task("train", total=total_steps, completed=start, info="")
        t0, t_tokens = time.perf_counter(), 0
        for step in range(start, total_steps):
            x_BD = (next(batches).to(mean_D.device) - mean_D) * scale
            log = (step + 1) % cfg.log_every == 0 or step + 1 == total_steps
            for m in members:
                m.step(x_BD, step, measure=log)
            t_tokens += x_BD.shape[0]
            if log:
                rate = t_tokens / max(time.perf_counter() - t0, 1e-9)
                _log(out, members, step, cfg.batch_size, rate)
                bar.update(task, info=_bar_info(members))
                t0, t_tokens = time.perf_counter(), 0
            if (step + 1) % ckpt_steps == 0 and step + 1 < total_steps:
                _checkpoint(out, members, step + 1, cfg.batch_size)
            bar.advance(task)


def _bar_info(members: list[Member]) -> str:
    m = members[0]
    more = f" (+{len(members) - 1} SAEs)" if len(members) > 1 else ""
    return f"NMSE {m.last.get('nmse', float('nan')):.3f}  L0 {m.last.get('l0', float('nan')):.1f}{more}"


def _log(out: Path, members: list[Member], step: int, batch_size: int, rate: float) -> None:
    lines = []
    for m in members:
        rec = {"step": step + 1, "tokens": (step + 1) * batch_size, "sae": m.name, **m.last, "tokens_per_s": rate}
        lines.append(json.dumps(rec))
    with open(out / METRICS_FILE, "a") as f:
        f.write("\n".join(lines) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    f = Path(run_dir) / METRICS_FILE
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _truncate_metrics(out: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from."""
    kept = [json.dumps(r) for r in read_metrics(out) if r["step"] <= step]
    write_text(out / METRICS_FILE, "".join(line + "\n" for line in kept))


def _checkpoint(out: Path, members: list[Member], step: int, batch_size: int) -> None:
    state = {"step": step, "tokens": step * batch_size, "members": {m.name: m.state() for m in members}}
    save_checkpoint(out, state)


def _finish(members, source, cfg, out, mean_D, scale, total_steps) -> None:
    _checkpoint(out, members, total_steps, cfg.batch_size)
    meta = store_meta(source, cfg)
    for m in members:
        sae = copy.deepcopy(m.sae).cpu().eval()
        sae.fold_normalization(mean_D.cpu(), scale)
        sae.meta = {**meta, "trained_tokens": total_steps * cfg.batch_size, "run_sae": m.name}
        folder = save_saelens(sae, out / RUN_SAES / m.name)
        log_density = (m.density_S().cpu() + 1e-10).log10()
        write_with(folder / "sparsity.safetensors", lambda tmp, t=log_density: save_file({"sparsity": t}, str(tmp)))
    write_marker(out, RUN_KIND, saes=[m.name for m in members], complete=True)
    from visae.sae.plots import plot_run

    plot_run(out)
    info(f"trained {', '.join(m.name for m in members)} -> {out / RUN_SAES}")


def store_meta(source: TokenSource, cfg: TrainConfig) -> dict[str, Any]:
    """visae's metadata for cfg.json: where the activations came from and their statistics."""
    raw = source.meta
    meta = raw.model_dump(mode="json") if hasattr(raw, "model_dump") else dict(raw or {})
    meta = {k: v for k, v in meta.items() if k not in BULKY_STORE_FIELDS}
    return {
        "backbone": meta.get("backbone"),
        "layer": meta.get("layer"),
        "layout": meta.get("layout"),
        "dataset": meta.get("dataset"),
        "store": str(Path(cfg.store).resolve()),
        "store_meta": meta,
        "normalization": {
            "trained_on": "(x - mean) * scale" if cfg.normalize else "x",
            "scale": float(source.scale) if cfg.normalize else 1.0,
            "mean_norm": float(torch.as_tensor(source.mean_D).float().norm()) if cfg.normalize else 0.0,
            "folded": True,
        },
    }


__all__ = ["Run", "TrainConfig", "train", "read_metrics", "run_sae_dirs"]
