"""One SAE being trained: its optimiser, schedules, dead-latent counters and its step.

The step is the same for every architecture: forward (the contract), loss, backward,
remove the decoder-parallel gradient, clip, Adam, re-normalise the decoder.

Data-parallel (a ``World`` of several ranks, each with its own rows of the global batch): after
the backward one all-reduce per SAE averages the gradients and float buffers and sums the fired
counts, so every rank takes the same step; measured metrics are all-reduced sums, i.e. those of
the global batch. Latent-sharded (the SAE is a ``sharded.Sharded``, this rank's slice of the
latents): the SAE's forward and gradient clipping communicate; ``state()`` gathers the whole SAE on
rank 0 and ``load_state`` takes this rank's slice of one, so checkpoints are those of one process.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from visae.distributed import World
from visae.errors import VisaeError
from visae.sae import kernels
from visae.sae.adam import MemoryOrderAdam, make_adam  # noqa: F401 - MemoryOrderAdam re-exported
from visae.sae.base import SAE
from visae.sae.sharded import Sharded, gather_state, slice_state, whole_sae
from visae.sae.train_config import DEFAULT_SPARSITY, SAEHparams, TrainConfig

DENSITY_HALF_LIFE = 1_000_000
"""Tokens over which the running latent-density estimate halves its memory."""
DENSE_RATE = 0.1
"""A latent firing on more than this fraction of tokens counts as dense."""


def lr_factor(step: int, total: int, warmup: float, decay: float) -> float:
    """Linear warmup over the first ``warmup`` of steps, linear decay over the last ``decay``."""
    warm_steps, decay_steps = warmup * total, decay * total
    f = 1.0
    if warm_steps > 0:
        f = min(f, (step + 1) / warm_steps)
    if decay_steps > 0:
        f = min(f, (total - step) / decay_steps)
    return max(f, 0.0)


class Member:
    """An SAE plus everything its training step needs."""

    def __init__(self, hp: SAEHparams, sae: SAE, cfg: TrainConfig, total_steps: int, dead_tokens: int,
                 world: World | None = None):  # fmt: skip
        self.hp, self.sae, self.cfg, self.total_steps = hp, sae, cfg, total_steps
        self.world = world if world is not None and world.distributed else None
        """The data-parallel job this SAE trains in (None: one process)."""
        if self.world is not None and hasattr(sae, "dp_world"):
            sae.dp_world = self.world  # BatchTopK-family selection over the global batch
        self.shard = sae if isinstance(sae, Sharded) else None
        """This rank's slice of a latent-sharded SAE (None: the whole SAE is here)."""
        self.dead_tokens = dead_tokens
        """A latent that has not fired for this many tokens is dead (AuxK trains it)."""
        self.name = hp.label()
        self.base_lr = hp.learning_rate(self.shard.full_spec.d_sae if self.shard is not None else sae.d_sae)
        term = sae.sparsity_term
        self.sparsity = (hp.sparsity_coeff if hp.sparsity_coeff is not None else DEFAULT_SPARSITY.get(term, 0.0)) if term else 0.0
        self._fresh_state()
        self.last: dict[str, float] = {}
        """Metrics of the last measured training batch (training-time codes)."""
        self.heldout: dict[str, float] | None = None
        """Metrics of the last held-out evaluation (inference-time codes)."""

    def _fresh_state(self) -> None:
        """Optimiser and per-latent counters for ``self.sae`` (as at step 0)."""
        sae = self.sae
        self.opt = make_adam([p for p in sae.parameters()], self.base_lr)
        dev = sae.W_dec.device
        self.since_fired_S = torch.zeros(sae.d_sae, dtype=torch.int64, device=dev)
        self.count_S = torch.zeros(sae.d_sae, dtype=torch.float64, device=dev)
        self.count_tokens = 0.0

    def coeffs(self, step: int) -> dict[str, float]:
        c = {"auxk": self.hp.auxk_coeff, "prefix": 1.0}
        if self.sae.sparsity_term:
            ramp = self.cfg.sparsity_warmup * self.total_steps
            c[self.sae.sparsity_term] = self.sparsity * (min(1.0, (step + 1) / ramp) if ramp > 0 else 1.0)
        return c

    def step(self, x_BD: Tensor, step: int, measure: bool) -> None:
        """One optimisation step on ``x_BD``; raises on a non-finite loss before touching weights.

        Top-k families (sparse kernels) run it on one thread except the encoder GEMM and
        top-k (``kernels.few_threads``); dense architectures are all GEMMs and keep every thread.
        """
        cfg = self.cfg
        lr = self.base_lr * lr_factor(step, self.total_steps, cfg.lr_warmup, cfg.lr_decay)
        for group in self.opt.param_groups:
            group["lr"] = lr
        with kernels.few_threads() if self.sae.needs_k else nullcontext():
            self._update(x_BD, step, lr, measure)

    def _update(self, x_BD: Tensor, step: int, lr: float, measure: bool) -> None:
        sae, cfg = self.sae, self.cfg
        dead_S = self.since_fired_S >= self.dead_tokens
        bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and x_BD.device.type == "cuda")
        with torch.autocast(x_BD.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = sae(x_BD, dead_S=dead_S)
        loss, terms = sae.loss(x_BD, out, self.coeffs(step))
        if not bool(torch.isfinite(loss)):
            raise NonFiniteLoss(self.name, step, float(loss.detach()))
        if out.codes.is_sparse:  # the sparse backward writes into last step's gradients
            kernels.recycle_grads(sae.parameters())  # = zero_grad(set_to_none=True)
        else:
            self.opt.zero_grad(set_to_none=True)
        loss.backward()
        kernels.drop_spare_grads()
        if self.world is not None:
            fired_S = self._all_reduce_step(out.codes.count_S(), step)
        sae.remove_parallel_grad()
        sae.clip_grad_norm(cfg.grad_clip)
        self.opt.step()
        sae.normalize_decoder()
        if self.world is not None:
            self._track(fired_S, x_BD.shape[0] * self.world.size)
        else:
            self._track(out.codes.count_S(), x_BD.shape[0])
        if measure:
            self.last = self._measure(x_BD, out.recon_BD, out.codes, loss, terms, lr, dead_S)

    @torch.no_grad()
    def _all_reduce_step(self, fired_S: Tensor, step: int) -> Tensor:
        """Average the ranks' gradients and float buffers, sum their fired counts: one all-reduce.

        Every rank's local loss is a mean over its ``B / N`` tokens, so the average of the gradients is
        the gradient of the global batch's mean loss. A parameter without a gradient on some rank gets
        zeros there (one without a gradient on every rank keeps none, as Adam expects). Float buffers
        (BatchTopK's running threshold) are averaged, so they stay identical on every rank.
        """
        w, sae = self.world, self.sae
        assert w is not None
        params = list(sae.parameters())
        buffers = [b for b in sae.buffers() if b.is_floating_point()]
        dev = params[0].device if w.backend == "nccl" else torch.device("cpu")
        parts: list[Tensor] = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device) for p in params]
        parts += [b.reshape(-1).float() for b in buffers]
        parts += [fired_S.float(), torch.tensor([float(p.grad is not None) for p in params], device=fired_S.device)]
        flat = torch.cat([t.float().to(dev) for t in parts])
        w.all_reduce(flat, f"train: step {step + 1} of SAE '{self.name}'")
        at = sum(p.numel() for p in params) + sum(buf.numel() for buf in buffers)
        fired = flat[at : at + fired_S.numel()].round().to(fired_S.dtype).to(fired_S.device)
        has_P = flat[at + fired_S.numel() :].tolist()
        at = 0
        for p, has in zip(params, has_P):
            n = p.numel()
            if p.grad is not None:
                p.grad.copy_(flat[at : at + n].view(p.shape) / w.size)  # copy_ keeps the gradient's strides
            elif has > 0:
                p.grad = (flat[at : at + n].view(p.shape) / w.size).to(p.device)
            at += n
        for buf in buffers:
            buf.copy_((flat[at : at + buf.numel()] / w.size).view(buf.shape))
            at += buf.numel()
        return fired

    @torch.no_grad()
    def _track(self, fired_S: Tensor, n_tokens: int) -> None:
        self.since_fired_S += n_tokens
        self.since_fired_S[fired_S > 0] = 0
        decay = 0.5 ** (n_tokens / DENSITY_HALF_LIFE)
        self.count_S.mul_(decay).add_(fired_S)
        self.count_tokens = self.count_tokens * decay + n_tokens

    @torch.no_grad()
    def _measure(self, x_BD, recon_BD, codes, loss, terms, lr, dead_S) -> dict[str, float]:
        dense_S = self.density_S() > DENSE_RATE
        dead, dense, S = int(dead_S.sum()), int(dense_S.sum()), dead_S.numel()
        if self.world is not None:
            loss, err, var, l0, terms = self._global_figures(x_BD, recon_BD, codes, loss, terms)
        else:
            err = (recon_BD.float() - x_BD).pow(2).sum()
            var = (x_BD - x_BD.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
            l0 = codes.l0_B().float().mean()
        if self.shard is not None:  # the reconstruction is whole on every rank; the codes are this rank's latents'
            l0, dead, dense = self.shard.latent_counts(codes.l0_B(), dead_S, dense_S)
            S = self.shard.full_spec.d_sae
        stats = {
            "loss": float(loss),
            "nmse": float(err / var),
            "l0": float(l0),
            "dead_pct": 100.0 * dead / S,
            "dense_pct": 100.0 * dense / S,
            "lr": lr,
        }
        stats.update({k: float(v) for k, v in terms.items()})
        return stats

    def _global_figures(self, x_BD, recon_BD, codes, loss, terms) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """(loss, squared error, variance, mean L0, terms) of the global batch: one all-reduce of sums
        (the variance from the sums of x and x^2, in float64)."""
        w = self.world
        assert w is not None
        n = x_BD.shape[0]
        names = sorted(terms)
        x64_BD = x_BD.double()
        head = [(recon_BD.float() - x_BD).pow(2).sum(), x64_BD.pow(2).sum(), torch.tensor(n), codes.l0_B().sum(),
                loss.detach() * n, *[terms[k].detach() * n for k in names]]  # fmt: skip
        dev = x_BD.device if w.backend == "nccl" else torch.device("cpu")
        flat = torch.cat([torch.stack([t.double().to(dev) for t in head]), x64_BD.sum(dim=0).to(dev)])
        w.all_reduce(flat, f"train: metrics of SAE '{self.name}'")
        err, sq, N = flat[0], flat[1], flat[2]
        var = (sq - flat[5 + len(names) :].pow(2).sum() / N).clamp_min(1e-12)
        return flat[4] / N, err, var, flat[3] / N, {k: flat[5 + i] / N for i, k in enumerate(names)}

    def density_S(self) -> Tensor:
        """Running fraction of tokens on which each latent fires."""
        return (self.count_S / max(self.count_tokens, 1.0)).float()

    def state(self) -> dict[str, Any] | None:
        """Everything a checkpoint keeps of this SAE. Latent-sharded: a collective (every rank calls it) that
        returns the whole SAE's state on rank 0 and None on the others."""
        local = {
            "sae": self.sae.state_dict(),
            "opt": self.opt.state_dict(),
            "since_fired_S": self.since_fired_S.cpu(),
            "count_S": self.count_S.cpu(),
            "count_tokens": self.count_tokens,
            "last": dict(self.last),  # a run resumed at its last step saves these figures as an uninterrupted run
            "heldout": self.heldout,
        }
        return local if self.shard is None else gather_state(local, self.shard)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a ``state()`` (a latent-sharded SAE takes its slice of the whole SAE's)."""
        if self.shard is not None:
            state = slice_state(state, self.shard)
        self.sae.load_state_dict(state["sae"])
        self.opt.load_state_dict(state["opt"])
        self.since_fired_S.copy_(state["since_fired_S"])
        self.count_S.copy_(state["count_S"])
        self.count_tokens = state["count_tokens"]
        self.last = dict(state.get("last") or {})  # (checkpoints written before they were kept: {})
        self.heldout = state.get("heldout")


    def unshard(self) -> None:
        """Latent-sharded: make rank 0's member hold the whole SAE (on the CPU) with its optimiser state and
        counters, for saving; the other ranks keep their slices. A collective; a no-op when not sharded."""
        if self.shard is None:
            return
        shard, state = self.shard, self.state()
        if state is None:
            return
        self.sae, self.shard = whole_sae(shard, state), None
        self._fresh_state()
        self.load_state(state)


class NonFiniteLoss(VisaeError):
    def __init__(self, name: str, step: int, value: float):
        super().__init__(
            f"SAE '{name}': loss became {value} at step {step}; training stopped, the last good checkpoint is kept",
            "lower --lr, check the store for NaN/inf activations, then --resume or --force",
        )
        self.step = step
