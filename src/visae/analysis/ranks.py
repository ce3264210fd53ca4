"""Distributed analysis: ``torchrun --nproc-per-node N -m visae analyze --run RUN ...``.

Each rank scans a contiguous share of the store's images (``World.slice`` over the image table, whole
images only) into the same accumulators as the single-process pass (``visae.analysis.scan.Scan``).
The ranks then gather their accumulators to rank 0, which merges them: token, fire and image counts,
histograms, class tokens and images add exactly; activation sums and class / edge / grid masses add in
float64 (another order of the same sums); maxima take the max; every top-k list (the image rankings
with their activation maps, and each population's capped top patches) is the best K of the ranks'
lists together. An image's tokens are all on one rank, so the per-image cap on top patches holds as
in one process. Rank 0 alone then scores, collapses near-duplicates, labels and writes the feature DB
exactly as one process does; it holds the run's lock throughout, and the other ranks write nothing
and print nothing (``VISAE_QUIET=1``). The ranks meet at a few points (``together``): an error on
one rank stops all of them, and a rank that stops answering makes the others stop with
visae.distributed's one-line error.

What travels: per rank, its slots of every top-k list (score, image and, for the rankings, an
activation map of G float16 cells per slot: S x (top + spare) x G x 2 bytes per ranking, e.g.
16384 x 48 x 196 x 2 = 308 MB for 16k latents, top 32 + spare 16 and a 14 x 14 grid), gathered one
ranking at a time; the rest is O(S x HIST_BINS) (6 MB for 16k latents) and O(units x top patches).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from visae.analysis.inputs import complete_images
from visae.analysis.scan import Scan, ScanResult, run_scan
from visae.analysis.stats import LatentStats
from visae.analysis.topk import TopK
from visae.analysis.units import Units
from visae.distributed import World


def together(w: World, what: str, fn: Any) -> Any:
    """``fn()`` on every rank; an error on any rank stops every rank (visae.sae.trainer.together)."""
    if not w.distributed:
        return fn()
    from visae.sae.trainer import together as _together

    return _together(w, what, fn)


def quiet_unless_main(w: World) -> None:
    if not w.main:
        os.environ["VISAE_QUIET"] = "1"  # rank 0 speaks for the job (errors still print on every rank)


def merge_scans(w: World, acc: Scan) -> Scan | None:
    """Gather every rank's accumulators to rank 0 and fold them into rank 0's ``acc`` (returned
    there, in rank order of the shares); None on the other ranks."""
    states = w.gather_objects(_state(acc), "analyze: gather the ranks' statistics")
    for name, top in acc.tops.items():  # the maps are the bulk: one ranking at a time
        maps = w.gather_objects(top.data["map"].numpy(), f"analyze: gather the '{name}' maps")
        if w.main:
            for state, m in zip(states, maps):
                state["tops"][name]["map"] = m
        del maps
    if not w.main:
        return None
    _merge_stats(acc.stats, [s["stats"] for s in states])
    acc.n_images = sum(s["n_images"] for s in states)
    acc.class_tokens_L = torch.from_numpy(sum(s["class_tokens"] for s in states))
    acc.class_images_L = torch.from_numpy(sum(s["class_images"] for s in states))
    for name, top in acc.tops.items():
        _merge_topk(top, [s["tops"][name] for s in states])
    for name, u in acc.units.items():
        _merge_units(u, [s["units"][name] for s in states])
    return acc


def _state(acc: Scan) -> dict[str, Any]:
    """The accumulators of ``acc`` as numpy arrays (the rankings' maps travel separately)."""
    st = acc.stats
    return {
        "n_images": acc.n_images,
        "class_tokens": acc.class_tokens_L.numpy(), "class_images": acc.class_images_L.numpy(),
        "stats": {"n_tokens": st.n_tokens, "fire_S": st.fire_S.numpy(), "sum_S": st.sum_S.numpy(),
                  "max_S": st.max_S.numpy(), "hist_SX": st.hist_SX.numpy()},
        "tops": {name: _topk_state(t, skip=("map",)) for name, t in acc.tops.items()},
        "units": {name: {"class_mass_LC": u.class_mass_LC.numpy(), "n_images_C": u.n_images_C.numpy(),
                         "edge_mass_C": u.edge_mass_C.numpy(), "grid_mass_C": u.grid_mass_C.numpy(),
                         "patches": None if u.patches is None else _topk_state(u.patches)}
                  for name, u in acc.units.items()},
    }  # fmt: skip


def _topk_state(t: TopK, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    return {"score": t.score_SK.numpy()} | {k: v.numpy() for k, v in t.data.items() if k not in skip}


def _merge_stats(st: LatentStats, parts: list[dict[str, Any]]) -> None:
    st.n_tokens = sum(p["n_tokens"] for p in parts)
    st.fire_S = torch.from_numpy(sum(p["fire_S"] for p in parts))
    st.sum_S = torch.from_numpy(sum(p["sum_S"] for p in parts))
    st.max_S = torch.from_numpy(np.maximum.reduce([p["max_S"] for p in parts]))
    st.hist_SX = torch.from_numpy(sum(p["hist_SX"] for p in parts))


def _merge_units(u: Units, parts: list[dict[str, Any]]) -> None:
    u.class_mass_LC = torch.from_numpy(sum(p["class_mass_LC"] for p in parts))
    u.n_images_C = torch.from_numpy(sum(p["n_images_C"] for p in parts))
    u.edge_mass_C = torch.from_numpy(sum(p["edge_mass_C"] for p in parts))
    u.grid_mass_C = torch.from_numpy(sum(p["grid_mass_C"] for p in parts))
    if u.patches is not None:
        _merge_topk(u.patches, [p["patches"] for p in parts])


def _merge_topk(t: TopK, parts: list[dict[str, np.ndarray]]) -> None:
    """The best K of the ranks' slots together, per latent. Equal scores keep the ranks' order (rank
    order is store order): a tie at the cut goes to the earlier share. Only exactly equal positive scores
    of different images (byte-identical images) can make this differ from one pass, whose own choice
    among them depends on its batches."""
    score_SX = np.concatenate([p["score"] for p in parts], axis=1)
    order_SK = np.argsort(-score_SX, axis=1, kind="stable")[:, : t.K]
    t.score_SK = torch.from_numpy(np.ascontiguousarray(np.take_along_axis(score_SX, order_SK, 1)))
    for name in t.data:
        v_SX = np.concatenate([p[name] for p in parts], axis=1)
        idx = order_SK.reshape(*order_SK.shape, *([1] * (v_SX.ndim - 2)))
        t.data[name] = torch.from_numpy(np.ascontiguousarray(np.take_along_axis(v_SX, idx, 1)))


def scan_ranks(w: World, store: Any, sae: torch.nn.Module, layout: Any, labels: np.ndarray, n_classes: int, top: int,
               batch_images: int, *, kinds: frozenset[int] | None = None, **baselines: Any) -> ScanResult | None:  # fmt: skip
    """``visae.analysis.scan.scan`` over this rank's share of the store's images, merged on rank 0 (None elsewhere)."""
    acc = Scan(sae, layout, labels, n_classes, top, **baselines)
    share = w.slice(complete_images(store))
    together(w, "analyze: scan the store", lambda: run_scan(acc, store, batch_images, kinds, share))
    merged = merge_scans(w, acc)
    return None if merged is None else merged.finish()
