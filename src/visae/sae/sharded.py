"""Latent sharding: one TopK or BatchTopK SAE whose latents are split across the ranks of a torchrun job.

For SAEs too wide for one device (``visae train --parallel latents`` under torchrun). Rank r of R holds
the contiguous latents ``[lo, hi) = shard_range(S, r, R)``: its columns of ``W_enc``, its entries of
``b_enc``, its rows of ``W_dec``, and a copy of ``b_dec``. Every rank sees the whole batch. A step:

    pre_r  = (x - b_dec) @ W_enc[:, lo:hi] + b_enc[lo:hi]      this rank's pre-activations     [B, S/R]
    cand_r = top-k of pre_r, per token                         k candidates per token and rank  [B, k]
    theta  = k-th largest of all ranks' candidates             the global top-k threshold       [B]   (all-gather)
    z_r    = ReLU(cand_r) where cand_r >= theta                this rank's share of the top-k
    x_hat  = sum_r z_r @ W_dec[lo:hi] + b_dec                  partial decodes, summed          [B, D] (all-reduce)

so codes, reconstruction and loss are those of the unsharded SAE. BatchTopK does the same with the k*B
largest pre-activations of the batch (``kernels.select_batch_topk(..., sharded=True)``): every rank sends
its k*B largest, all keep those above the k*B-th largest of the union, and the threshold's running
average is the same on every rank; at inference its JumpReLU codes are per latent, decoded and summed
the same way. The loss is the same on every rank,
so the backward of the sum is the identity: each rank's partial decode receives dL/dx_hat and the
gradients of its own slice are exact without communication. ``b_dec``'s gradient is the decoder term
(the same on every rank) plus the encoder term summed over the ranks: one all-reduce per step,
together with the squared gradient norm for clipping. AuxK makes the same global selection among the
dead latents. Adam, decoder-row normalisation and dead-latent counters act latent by latent.

Per step a rank sends B*k candidate values and B*D partial reconstructions (plus the same again for
AuxK while latents are dead), where data-parallel training all-reduces 2*D*S gradient values: sharding
pays when S is much larger than B. Checkpoints and saved SAEs hold the whole SAE (``gather_state``
collects the slices on rank 0), so any world size, or one process, resumes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function

from visae.distributed import World
from visae.errors import VisaeError
from visae.sae import kernels
from visae.sae.base import SAE, create_sae
from visae.sae.contract import Codes, SAEOutput
from visae.sae.batchtopk import BatchTopKSAE
from visae.sae.topk import TopKSAE

LATENT_DIM = {"W_enc": 1, "b_enc": 0, "W_dec": 0, "threshold": 0}
"""The dimension along which each parameter (and buffer) is split by latent; the others (``b_dec``, BatchTopK's
``threshold_ema``) are replicated."""
COUNTERS = ("since_fired_S", "count_S")
"""Per-latent training counters of a ``Member`` state, split like ``b_enc``."""
SHARDABLE = ("topk", "batchtopk")
"""Architectures that ``--parallel latents`` can shard."""


def check_shardable(arch: str) -> None:
    if arch not in SHARDABLE:
        raise VisaeError(f"--parallel latents shards {' and '.join(SHARDABLE)} SAEs, not '{arch}'",
                         "train it with --parallel data (the default), or use --arch topk")  # fmt: skip


def shard(full: SAE, world: World) -> "Sharded":
    """This rank's slice of the freshly initialised SAE ``full``."""
    check_shardable(full.spec.arch)
    return {"topk": ShardedTopKSAE, "batchtopk": ShardedBatchTopKSAE}[full.spec.arch](full, world)


class Sharded(SAE):
    """What a sharded SAE adds to its architecture: this rank's slice (``full``'s latents ``[lo, hi)``; ``full_spec``
    describes the whole), the global selection, the summed decode and AuxK, and the gradient completion."""

    def __init__(self, full: SAE, world: World):
        lo, hi = world.slice(full.d_sae)
        if hi <= lo:
            raise VisaeError(f"an SAE of {full.d_sae} latents cannot be split over {world.size} ranks",
                             "use fewer ranks or a wider SAE")  # fmt: skip
        local = full.spec.model_copy(update={"d_sae": hi - lo, "k": min(full.spec.k or 1, hi - lo)})
        with torch.random.fork_rng(devices=[]):  # the slice's own random init is overwritten; keep the global RNG
            super().__init__(local)
        self.full_spec, self.world, self.lo, self.hi = full.spec, world, lo, hi
        self.meta = dict(full.meta)
        wholes = full.state_dict()
        with torch.no_grad():
            for name, t in self.state_dict().items():
                whole = wholes[name]
                t.copy_(whole.narrow(LATENT_DIM[name], lo, hi - lo) if name in LATENT_DIM else whole)
        self._b_dec_enc: Tensor | None = None
        """The leaf through which this step's encoder term of b_dec's gradient arrives (summed over ranks)."""

    @property
    def k_global(self) -> int:
        return int(self.full_spec.k or 0)

    # ---------------------------------------------------------------- forward

    def _global_keep(self, pre_BK: Tensor, k: int, what: str) -> Tensor:
        """Which of this rank's candidates are among the ``k`` largest of every rank's, per token."""
        B = pre_BK.shape[0]
        cand_BK = pre_BK.new_full((B, k), float("-inf"))
        cand_BK[:, : pre_BK.shape[1]] = pre_BK
        all_RBK = self.world.all_gather(_comm(cand_BK, self.world), f"train: {what} of the sharded SAE")
        theta_B = all_RBK.permute(1, 0, 2).reshape(B, -1).topk(k, dim=1).values[:, -1]
        return pre_BK >= theta_B.to(pre_BK)[:, None]

    def _decode(self, codes: Codes) -> Tensor:
        """``sum_r z_r @ W_dec[lo:hi] + b_dec``: this rank's partial decode, summed over the ranks."""
        if codes.is_sparse:
            partial_BD = kernels.sparse_decode(codes.idx_BK, codes.val_BK, self.W_dec)
        else:
            partial_BD = codes.dense_BS.to(self.W_dec.dtype) @ self.W_dec
        return sum_over_ranks(partial_BD, self.world, "decode") + self.b_dec

    def _output(self, x_BD: Tensor, codes: Codes, dead_S: Tensor | None, b_in_D: Tensor) -> SAEOutput:
        recon_BD = self._decode(codes)
        aux = {}
        if dead_S is not None:
            n_dead = int(self.world.all_reduce(_comm(dead_S.sum().reshape(1).double(), self.world), "train: dead latents")[0])
            if n_dead:
                aux["auxk"] = self._auxk(x_BD, recon_BD, dead_S, n_dead, b_in_D)
        return SAEOutput(recon_BD, codes, aux)

    def _encoder_leaf(self) -> Tensor:
        """A fresh leaf copy of b_dec for this step's encoder path (its gradient is summed over ranks in
        ``clip_grad_norm``)."""
        self._b_dec_enc = self.b_dec.detach().requires_grad_()
        return self._b_dec_enc

    def _auxk(self, x_BD: Tensor, recon_BD: Tensor, dead_S: Tensor, n_dead: int, b_in_D: Tensor) -> Tensor:
        """``topk.auxk_loss`` with the top-k_aux dead latents chosen over every rank's."""
        k_aux = self.d_in // 2
        scale = min(n_dead / k_aux, 1.0)
        k_sel, here = min(k_aux, n_dead), int(dead_S.sum())
        if here:
            sel = kernels.select_dead_topk(x_BD - self.b_dec.detach(), self.W_enc, self.b_enc, dead_S, min(k_sel, here))
        else:
            none = torch.zeros(x_BD.shape[0], 0, device=x_BD.device)
            sel = kernels.Selection(none.long(), none)
        keep_BK = self._global_keep(sel.pre_BK, k_sel, "AuxK selection")
        if here:
            val_BK = torch.relu(kernels.encoder_values(x_BD, b_in_D, self.W_enc, self.b_enc, sel)) * keep_BK
            partial_BD = kernels.sparse_decode(sel.idx_BK, val_BK, self.W_dec)
        else:
            partial_BD = torch.zeros_like(x_BD)
        resid_hat_BD = sum_over_ranks(partial_BD, self.world, "AuxK decode")
        resid_BD = (x_BD - recon_BD).detach()
        return scale * (resid_hat_BD - resid_BD).pow(2).sum(dim=-1).mean()

    # ---------------------------------------------------------------- after the backward

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> Tensor:
        """Complete b_dec's gradient (the encoder term summed over ranks) and clip every gradient by the
        whole SAE's norm: one all-reduce of [this slice's squared norm, b_dec's encoder term]."""
        sharded = [p.grad for p in (self.W_enc, self.b_enc, self.W_dec) if p.grad is not None]
        sq = torch.stack([g.double().pow(2).sum() for g in sharded]).sum() if sharded else torch.zeros((), dtype=torch.float64)
        enc = self._b_dec_enc.grad if self._b_dec_enc is not None and self._b_dec_enc.grad is not None else None
        enc_D = enc.double() if enc is not None else torch.zeros(self.d_in, dtype=torch.float64)
        flat = self.world.all_reduce(_comm(torch.cat([sq.reshape(1).cpu(), enc_D.cpu()]), self.world), "train: gradient norm")
        flat = flat.to(self.b_dec.device)
        add_D = flat[1:].to(self.b_dec.dtype)
        self.b_dec.grad = add_D if self.b_dec.grad is None else self.b_dec.grad.add_(add_D)
        total = (flat[0] + self.b_dec.grad.double().pow(2).sum()).sqrt()
        coef = float(max_norm / (total + 1e-6))
        if coef < 1.0:
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.mul_(coef)
        self._b_dec_enc = None
        return total

    # ---------------------------------------------------------------- whole-SAE state

    def latent_counts(self, l0_B: Tensor, dead_S: Tensor, dense_S: Tensor) -> tuple[Tensor, int, int]:
        """(mean L0, dead latents, dense latents) of the whole SAE: one all-reduce."""
        here = torch.stack([l0_B.double().sum(), dead_S.double().sum(), dense_S.double().sum()])
        total = self.world.all_reduce(_comm(here, self.world), "train: metrics of the sharded SAE").cpu()
        return total[0] / max(l0_B.shape[0], 1), int(total[1]), int(total[2])

    def param_names(self) -> list[str]:
        return [n for n, _ in self.named_parameters()]


class ShardedTopKSAE(Sharded, TopKSAE):
    """This rank's slice of a TopK SAE: its top-k candidates, kept where they are among the k largest of all ranks'."""

    def _codes(self, x_BD: Tensor, b_in_D: Tensor) -> Codes:
        sel = kernels.select_topk(x_BD - self.b_dec.detach(), self.W_enc, self.b_enc, self.spec.k)
        keep_BK = self._global_keep(sel.pre_BK, self.k_global, "top-k selection")
        val_BK = torch.relu(kernels.encoder_values(x_BD, b_in_D, self.W_enc, self.b_enc, sel)) * keep_BK
        return Codes(self.d_sae, sel.idx_BK, val_BK)

    def encode(self, x_BD: Tensor) -> Codes:
        """This rank's latents' codes under the global top-k (a collective: every rank must call it)."""
        return self._codes(x_BD, self.b_dec)

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        b_in_D = self._encoder_leaf()
        return self._output(x_BD, self._codes(x_BD, b_in_D), dead_S, b_in_D)


class ShardedBatchTopKSAE(Sharded, BatchTopKSAE):
    """This rank's slice of a BatchTopK SAE: training keeps its pre-activations among the k*B largest of the batch over
    all ranks; inference is the per-latent JumpReLU, decoded and summed like training codes."""

    def forward(self, x_BD: Tensor, dead_S: Tensor | None = None) -> SAEOutput:
        if not self.training:
            return self._output(x_BD, self.encode(x_BD), None, self.b_dec)
        b_in_D = self._encoder_leaf()
        sel, keep_BK, min_kept = kernels.select_batch_topk(x_BD - self.b_dec.detach(), self.W_enc, self.b_enc, self.k_global,
                                                         world=self.world, sharded=True)  # fmt: skip
        val_BK = torch.relu(kernels.encoder_values(x_BD, b_in_D, self.W_enc, self.b_enc, sel))
        self._update_threshold(min_kept)
        return self._output(x_BD, Codes(self.d_sae, sel.idx_BK, val_BK * keep_BK), dead_S, b_in_D)


class _SumOverRanks(Function):
    """Forward: the sum of every rank's tensor. Backward: the identity (the loss after it is the same on
    every rank, so each rank's summand receives the whole gradient)."""

    @staticmethod
    def forward(ctx, part_BD: Tensor, world: World, what: str) -> Tensor:  # type: ignore[override]
        total = world.all_reduce(_comm(part_BD.detach(), world, copy=True), f"train: {what} of the sharded SAE")
        return total.to(part_BD.device)

    @staticmethod
    def backward(ctx, g_BD: Tensor):  # type: ignore[override]
        return g_BD, None, None


def sum_over_ranks(part_BD: Tensor, world: World, what: str) -> Tensor:
    return _SumOverRanks.apply(part_BD, world, what)


def _comm(t: Tensor, world: World, copy: bool = False) -> Tensor:
    """``t`` on the device the backend communicates from (CPU for gloo)."""
    dev = t.device if world.backend == "nccl" else torch.device("cpu")
    return t.to(dev, copy=copy) if copy or t.device != dev else t


# -------------------------------------------------------------------- member states: slices <-> whole


def gather_state(local: dict[str, Any], sae: Sharded) -> dict[str, Any] | None:
    """Every rank's ``Member`` state (this rank's slice) merged into the whole SAE's state on rank 0 (None
    elsewhere): SAE tensors and Adam moments concatenated along their latent dimension, counters too."""
    parts = sae.world.gather_to_main(_to_cpu(local), "train: collect the sharded SAE")
    if parts is None:
        return None
    whole = dict(parts[0])
    whole["sae"] = {key: _cat([p["sae"][key] for p in parts], LATENT_DIM.get(key)) for key in parts[0]["sae"]}
    names = sae.param_names()
    opt = parts[0]["opt"]
    whole["opt"] = {**opt, "state": {i: {key: _cat([p["opt"]["state"][i][key] for p in parts], LATENT_DIM.get(names[i]) if key != "step" else None)
                                         for key in st} for i, st in opt["state"].items()}}  # fmt: skip
    for key in COUNTERS:
        whole[key] = torch.cat([p[key] for p in parts])
    return whole


def slice_state(whole: dict[str, Any], sae: Sharded) -> dict[str, Any]:
    """This rank's slice of a whole ``Member`` state (the inverse of ``gather_state``)."""
    lo, n = sae.lo, sae.hi - sae.lo
    names = sae.param_names()

    def cut(t: Tensor, dim: int | None) -> Tensor:
        return t if dim is None else _same_layout(t.narrow(dim, lo, n))

    part = dict(whole)
    part["sae"] = {key: cut(t, LATENT_DIM.get(key)) for key, t in whole["sae"].items()}
    opt = whole["opt"]
    part["opt"] = {**opt, "state": {i: {key: cut(t, LATENT_DIM.get(names[i]) if key != "step" else None) for key, t in st.items()}
                                    for i, st in opt["state"].items()}}  # fmt: skip
    for key in COUNTERS:
        part[key] = whole[key][lo : lo + n].clone()
    return part


def whole_sae(sae: Sharded, state: dict[str, Any]) -> SAE:
    """The unsharded SAE (on the CPU) with the weights of a gathered state."""
    with torch.random.fork_rng(devices=[]):
        full = create_sae(sae.full_spec)
    full.load_state_dict(state["sae"])
    full.meta = dict(sae.meta)
    return full


def _cat(parts: list[Tensor], dim: int | None) -> Tensor:
    if dim is None:
        return parts[0]
    if dim == 1 and parts[0].dim() == 2:  # W_enc and its moments are column-major: keep them so
        return torch.cat([p.t() for p in parts]).t()
    return torch.cat(parts, dim)


def _same_layout(t: Tensor) -> Tensor:
    """A contiguous copy of a slice, column-major where the slice of a column-major tensor is."""
    if t.dim() == 2 and t.stride(0) == 1:
        return t.t().contiguous().t()
    return t.contiguous()


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def whole_metrics(res: dict[str, Any], sae: Sharded) -> dict[str, Any]:
    """Held-out metrics of the whole SAE from every rank's ``evaluate`` of its slice (all ranks ran the same
    tokens, so the reconstruction figures agree; L0 adds up, dead and dense latents are counted over every
    slice): one all-reduce."""
    S_here, S = sae.d_sae, sae.full_spec.d_sae
    here = torch.tensor([res["l0"], round(res["dead_pct"] * S_here / 100), round(res["dense_pct"] * S_here / 100)],
                        dtype=torch.float64)  # fmt: skip
    total = sae.world.all_reduce(_comm(here, sae.world), "train: held-out metrics of the sharded SAE").cpu()
    return {**res, "l0": float(total[0]), "dead_pct": 100.0 * float(total[1]) / S, "dense_pct": 100.0 * float(total[2]) / S}
