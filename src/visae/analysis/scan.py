"""The one streaming pass over a store: encode each batch of whole images, fold it into
running statistics and top-k lists, and drop it.

Per batch only the dense codes of that batch (T x S) and their per-image activation maps
(B x G x S) exist; everything kept across batches is O(S * K * G) and does not grow with
the store. The pass collects, for every latent:

- frequency, mean and max activation, a log-binned histogram, class mass (``stats``);
- its top images ranked by max patch activation, by summed patch activation and (when the
  store has a CLS token) by CLS activation, each with the image's activation map (``topk``);
- its top patches (for part purity), and the same for the centred raw channels of the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from visae.analysis.inputs import KIND_CLS, KIND_PATCH, Batch, Layout, encode, iter_batches, sae_decoder
from visae.analysis.stats import LatentStats, LatentSummary
from visae.analysis.topk import TopK
from visae.progress import make_progress

PART_TOP = 16
"""Top patches per latent (and per raw channel) used for part purity."""


@dataclass
class Ranked:
    """Sorted top-k of one ranking: score, store image index and (for images) activation map."""

    score_SK: np.ndarray
    image_SK: np.ndarray
    map_SKG: np.ndarray | None = None
    cell_SK: np.ndarray | None = None


@dataclass
class ScanResult:
    stats: LatentSummary
    rankings: dict[str, Ranked] = field(default_factory=dict)
    """'max', 'sum' and, with a CLS token, 'cls'."""
    sae_patches: Ranked | None = None
    raw_patches: Ranked | None = None
    n_images: int = 0


class Scan:
    """Accumulators of one pass; ``add(batch)`` folds a batch in."""

    def __init__(self, sae: torch.nn.Module, layout: Layout, labels: np.ndarray, n_classes: int,
                 top: int, mean_D: torch.Tensor | None):
        self.sae, self.layout = sae, layout
        self.S = int(sae_decoder(sae).shape[0])
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.mean_D = mean_D
        self.stats = LatentStats(self.S, n_classes)
        G = layout.G
        names = ["max", "sum"] + (["cls"] if layout.n_cls > 0 else [])
        payload = {"image": ((), torch.int64), "map": ((G,), torch.float16)}
        self.tops = {n: TopK(self.S, top, payload) for n in names}
        patch_payload = {"image": ((), torch.int64), "cell": ((), torch.int64)}
        self.sae_patches = TopK(self.S, PART_TOP, patch_payload) if layout.has_grid else None
        D = layout.dim
        self.raw_patches = TopK(D, PART_TOP, patch_payload) if layout.has_grid and mean_D is not None else None
        self.n_images = 0

    def add(self, batch: Batch) -> None:
        codes_TS = encode(self.sae, batch.acts_TD)
        # The bookkeeping is many small ops: on one thread they run ~10x faster than on a
        # contended OpenMP pool, while the encoder GEMM above keeps every thread.
        with _one_thread():
            self._fold(batch, codes_TS)

    def _fold(self, batch: Batch, codes_TS: torch.Tensor) -> None:
        images_B, inv_T = torch.unique_consecutive(batch.image_T, return_inverse=True)
        B = len(images_B)
        self.n_images += B
        patch_T = batch.kind_T == KIND_PATCH if self.layout.has_grid else torch.zeros_like(inv_T, dtype=torch.bool)
        maps_BGS = self._maps(codes_TS, inv_T, patch_T, batch, B)
        scores = {"max": maps_BGS.amax(1), "sum": maps_BGS.sum(1)}
        # class mass counts every token of the image: the patch sums plus the other tokens
        image_sum_BS = scores["sum"] if self.layout.has_grid else torch.zeros(B, self.S)
        rest_T = (~patch_T).nonzero(as_tuple=True)[0]
        image_sum_BS = image_sum_BS.index_add(0, inv_T[rest_T], codes_TS[rest_T])
        max_S = scores["max"].amax(0)
        if len(rest_T):
            max_S = torch.maximum(max_S, codes_TS[rest_T].amax(0))
        self.stats.update(codes_TS, image_sum_BS, self.labels[images_B], max_S)
        if "cls" in self.tops:
            scores["cls"] = _first_per_image(codes_TS, inv_T, batch.kind_T == KIND_CLS, B)

        maps_BSG = maps_BGS.transpose(1, 2)  # a view: only the winners' maps are ever read

        def fetch(b: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"image": images_B[b], "map": maps_BSG[b, s]}

        for name, top in self.tops.items():
            top.update(scores[name], fetch)
        if self.layout.has_grid:
            cell_T = batch.y_T * self.layout.grid_W + batch.x_T
            image_P, cell_P = batch.image_T[patch_T], cell_T[patch_T]
            _add_map_patches(self.sae_patches, maps_BSG, scores["max"], images_B)
            if self.raw_patches is not None:
                _add_patches(self.raw_patches, batch.acts_TD[patch_T] - self.mean_D, image_P, cell_P)

    def _maps(self, codes_TS: torch.Tensor, inv_T: torch.Tensor, patch_T: torch.Tensor, batch: Batch,
              B: int) -> torch.Tensor:
        """(B, G, S) activation map of each image over its grid (no grid: G = 1, the image's max)."""
        if not self.layout.has_grid:
            idx_TS = inv_T[:, None].expand(-1, self.S)
            return torch.zeros(B, self.S).scatter_reduce_(0, idx_TS, codes_TS, "amax")[:, None, :]
        G, T = self.layout.G, len(inv_T)
        if T % B == 0 and _regular(batch, B, T // B, G, self.layout.grid_W):
            return codes_TS.view(B, T // B, self.S)[:, T // B - G :]  # the usual layout: a view, no copy
        cell_P = batch.y_T[patch_T] * self.layout.grid_W + batch.x_T[patch_T]
        maps_BGS = torch.zeros(B, G, self.S)
        maps_BGS[inv_T[patch_T], cell_P] = codes_TS[patch_T]
        return maps_BGS

    def finish(self) -> ScanResult:
        out = ScanResult(stats=self.stats.finish(), n_images=self.n_images)
        for name, top in self.tops.items():
            score, data = top.sorted()
            out.rankings[name] = Ranked(score.numpy(), data["image"].numpy(), data["map"].float().numpy())
        for attr in ("sae_patches", "raw_patches"):
            top = getattr(self, attr)
            if top is not None:
                score, data = top.sorted()
                setattr(out, attr, Ranked(score.numpy(), data["image"].numpy(), cell_SK=data["cell"].numpy()))
        return out


@contextmanager
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _regular(batch: Batch, B: int, N: int, G: int, grid_W: int) -> bool:
    """Every image has N tokens: N - G non-patch tokens, then all G patches in row-major order."""
    kind_BN, y_BN, x_BN = (t.view(B, N) for t in (batch.kind_T, batch.y_T, batch.x_T))
    if N < G or not bool((kind_BN[:, N - G :] == KIND_PATCH).all()) or bool((kind_BN[:, : N - G] == KIND_PATCH).any()):
        return False
    return bool(((y_BN[:, N - G :] * grid_W + x_BN[:, N - G :]) == torch.arange(G)).all())


def _first_per_image(codes_TS: torch.Tensor, inv_T: torch.Tensor, mask_T: torch.Tensor, B: int) -> torch.Tensor:
    """(B, S) codes of the first masked token of each image (the CLS token)."""
    idx = mask_T.nonzero(as_tuple=True)[0]
    img = inv_T[idx]
    first = torch.ones_like(img, dtype=torch.bool)
    first[1:] = img[1:] != img[:-1]  # tokens of an image are contiguous
    out_BS = torch.zeros(B, codes_TS.shape[1])
    out_BS[img[first]] = codes_TS[idx[first]]
    return out_BS


def _add_patches(top: TopK, values_PD: torch.Tensor, image_P: torch.Tensor, cell_P: torch.Tensor) -> None:
    """Offer each unit's best patches of this batch (rows P) to its running top patches."""
    if values_PD.shape[0] == 0:
        return
    best_KD, pos_KD = values_PD.topk(min(top.K, values_PD.shape[0]), dim=0)
    top.update(best_KD, lambda b, s: {"image": image_P[pos_KD[b, s]], "cell": cell_P[pos_KD[b, s]]})


def _add_map_patches(top: TopK, maps_BSG: torch.Tensor, max_BS: torch.Tensor, images_B: torch.Tensor) -> None:
    """The same from per-image maps. A latent's K best patches of the batch lie in its K best
    images by max patch value, and only images whose max beats the latent's current K-th
    patch can contribute, so only those images' maps are searched."""
    enters_BS = max_BS > top.score_SK.min(dim=1).values  # images with a patch that can enter
    n_enter_S = enters_BS.sum(0)
    units_U = n_enter_S.nonzero(as_tuple=True)[0]
    if len(units_U) == 0:
        return
    B, _, G = maps_BSG.shape
    k_img = int(min(top.K, n_enter_S.max()))
    _, img_UI = max_BS[:, units_U].T.topk(k_img, dim=1)  # (U, k_img) candidate images per latent
    cand_UIG = maps_BSG[img_UI, units_U[:, None]]  # their maps, contiguous rows of G
    best_UK, pos_UK = cand_UIG.reshape(len(units_U), k_img * G).topk(min(top.K, k_img * G), dim=1)
    best_KS = torch.full((best_UK.shape[1], top.S), float("-inf"))
    best_KS[:, units_U] = best_UK.T
    pos_KS = torch.zeros(best_KS.shape, dtype=torch.int64)
    pos_KS[:, units_U] = pos_UK.T
    row_S = torch.zeros(top.S, dtype=torch.int64)
    row_S[units_U] = torch.arange(len(units_U))

    def fetch(b: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        pos = pos_KS[b, s]
        return {"image": images_B[img_UI[row_S[s], pos // G]], "cell": pos % G}

    top.update(best_KS, fetch)


def scan(store: Any, sae: torch.nn.Module, layout: Layout, labels: np.ndarray, n_classes: int,
         top: int, batch_images: int, mean_D: torch.Tensor | None) -> ScanResult:
    """Run the pass with a progress bar over the store's images."""
    acc = Scan(sae, layout, labels, n_classes, top, mean_D)
    with make_progress() as progress:
        task = progress.add_task("analyze", total=int(getattr(store, "n_images", len(labels))), info="")
        for batch in iter_batches(store, batch_images):
            acc.add(batch)
            progress.update(task, completed=acc.n_images)
    return acc.finish()
