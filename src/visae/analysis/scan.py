"""The one streaming pass over a store: encode each batch of whole images, fold it into
running statistics and top-k lists, and drop it.

Per batch only the dense codes of that batch (T x S) and their per-image activation maps
(B x G x S) exist; everything kept across batches is O(S * K * G) and does not grow with
the store. The pass collects, for every latent:

- frequency, mean and max activation, a log-binned histogram (``stats``);
- its top images ranked by max patch activation, by summed patch activation and (when the
  analysed tokens include a CLS token) by CLS activation, each with the image's activation map
  (``top + spare`` candidates: near-duplicate images are dropped after the pass, ``dedup``);
- class mass, fired-image counts, capped top patches and edge-cell mass (``units``), and the same
  for the two baselines: the store's centred raw channels (each sign a unit) and a random-init SAE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from visae.analysis.inputs import KIND_CLS, KIND_PATCH, Batch, Layout, encode, iter_batches, sae_decoder
from visae.analysis.stats import LatentStats, LatentSummary
from visae.analysis.topk import TopK
from visae.analysis.units import PART_TOP, PER_IMAGE, UnitResult, Units, edge_cells
from visae.progress import make_progress

__all__ = ["PART_TOP", "Ranked", "Scan", "ScanResult", "run_scan", "scan"]


@dataclass
class Ranked:
    """Sorted top-k of one ranking: score, store image index and (for images) activation map."""

    score_SK: np.ndarray
    image_SK: np.ndarray
    map_SKG: np.ndarray | None = None
    dups_SK: np.ndarray | None = None
    """Near-duplicates of each entry dropped from the list (visae.analysis.distinct); None before."""
    dropped_S: np.ndarray | None = None
    """Entries dropped from each latent's list as near-duplicates of a better one."""


@dataclass
class ScanResult:
    stats: LatentSummary
    rankings: dict[str, Ranked] = field(default_factory=dict)
    """'max', 'sum' and, with a CLS token, 'cls'."""
    units: dict[str, UnitResult] = field(default_factory=dict)
    """'sae' and, where measured, the baselines 'raw' (2D signed channels) and 'random' (random-init SAE)."""
    class_tokens_L: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Analysed tokens per class (of the image they come from)."""
    class_images_L: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_images: int = 0


class Scan:
    """Accumulators of one pass; ``add(batch)`` folds a batch in.

    ``raw_mean_D``: centre of the raw channels (None: no raw-channel baseline);
    ``random_sae``: the random-init baseline SAE (None: none); ``device``: where SAEs encode;
    ``spare``: candidates kept beyond ``top`` (and beyond PART_TOP top patches) per list.
    """

    def __init__(self, sae: torch.nn.Module, layout: Layout, labels: np.ndarray, n_classes: int, top: int, *,
                 raw_mean_D: torch.Tensor | None = None, random_sae: torch.nn.Module | None = None,
                 device: torch.device | None = None, per_image: int = PER_IMAGE, spare: int = 0):  # fmt: skip
        self.sae, self.random_sae, self.layout = sae, random_sae, layout
        self.device = device or torch.device("cpu")
        self.S = int(sae_decoder(sae).shape[0])
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.L = n_classes
        self.raw_mean_D = raw_mean_D
        self.stats = LatentStats(self.S)
        names = ["max", "sum"] + (["cls"] if layout.n_cls > 0 else [])
        payload = {"image": ((), torch.int64), "map": ((layout.G,), torch.float16)}
        self.tops = {n: TopK(self.S, top + spare, payload) for n in names}
        grid = layout.has_grid
        kw = {"top": PART_TOP + spare, "per_image": per_image,
              "edge_G": edge_cells(layout.grid_H, layout.grid_W) if grid else None}
        self.units = {"sae": Units(self.S, n_classes, grid, **kw)}
        if raw_mean_D is not None:
            self.units["raw"] = Units(2 * layout.dim, n_classes, grid, **kw)
        if random_sae is not None:
            self.units["random"] = Units(int(sae_decoder(random_sae).shape[0]), n_classes, grid, **kw)
        self.class_tokens_L = torch.zeros(max(n_classes, 1), dtype=torch.int64)
        self.class_images_L = torch.zeros(max(n_classes, 1), dtype=torch.int64)
        self.n_images = 0

    def add(self, batch: Batch) -> None:
        if batch.image_T.numel() == 0:
            return
        ctx = _Ctx.of(batch, self.layout, self.labels)
        self.n_images += ctx.B
        self._count_classes(ctx)
        codes_TS = self._encode(self.sae, batch.acts_TD)
        # The bookkeeping is many small ops: on one thread they run ~10x faster than on a
        # contended OpenMP pool, while the encoder GEMM keeps every thread.
        with _one_thread():
            self._fold_sae(batch, ctx, codes_TS)
        del codes_TS
        if self.random_sae is not None:
            codes_TS = self._encode(self.random_sae, batch.acts_TD)
            with _one_thread():
                self._fold_units("random", batch, ctx, codes_TS)
            del codes_TS
        if self.raw_mean_D is not None:
            centred_TD = batch.acts_TD - self.raw_mean_D
            # unit 2d is +channel d, unit 2d + 1 is -channel d
            signed_TC = torch.stack([centred_TD.clamp(min=0), (-centred_TD).clamp(min=0)], dim=2).flatten(1)
            with _one_thread():
                self._fold_units("raw", batch, ctx, signed_TC)

    def _encode(self, sae: torch.nn.Module, acts_TD: torch.Tensor) -> torch.Tensor:
        """Dense codes on the CPU, encoded on ``self.device`` (bf16 autocast on CUDA)."""
        x_TD = acts_TD.to(self.device, non_blocking=True)
        cuda = self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
            codes_TS = encode(sae, x_TD)
        return codes_TS.float().cpu() if cuda else codes_TS

    def _count_classes(self, ctx: "_Ctx") -> None:
        known_B = ctx.label_B >= 0
        if not self.L or not bool(known_B.any()):
            return
        tokens_B = torch.bincount(ctx.inv_T, minlength=ctx.B)
        self.class_tokens_L.index_add_(0, ctx.label_B[known_B], tokens_B[known_B])
        self.class_images_L += torch.bincount(ctx.label_B[known_B], minlength=len(self.class_images_L))

    def _fold_sae(self, batch: Batch, ctx: "_Ctx", codes_TS: torch.Tensor) -> None:
        maps_BGS = self._maps(codes_TS, batch, ctx)
        scores = {"max": maps_BGS.amax(1), "sum": maps_BGS.sum(1)}
        image_sum_BS = _image_sums(codes_TS, maps_BGS if self.layout.has_grid else None, ctx)
        max_S = scores["max"].amax(0)
        if len(ctx.rest_T):
            max_S = torch.maximum(max_S, codes_TS[ctx.rest_T].amax(0))
        self.stats.update(codes_TS, max_S)
        if "cls" in self.tops:
            scores["cls"] = _first_per_image(codes_TS, ctx.inv_T, batch.kind_T == KIND_CLS, ctx.B)
        maps_BSG = maps_BGS.transpose(1, 2)  # a view: only the winners' maps are ever read

        def fetch(b: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"image": ctx.images_B[b], "map": maps_BSG[b, s]}

        for name, top in self.tops.items():
            top.update(scores[name], fetch)
        grid = self.layout.has_grid
        self.units["sae"].add(image_sum_BS, ctx.label_B, ctx.images_B, maps_BGS if grid else None, scores["max"])

    def _fold_units(self, name: str, batch: Batch, ctx: "_Ctx", values_TC: torch.Tensor) -> None:
        maps_BGC = self._maps(values_TC, batch, ctx) if self.layout.has_grid else None
        self.units[name].add(_image_sums(values_TC, maps_BGC, ctx), ctx.label_B, ctx.images_B, maps_BGC)

    def _maps(self, values_TC: torch.Tensor, batch: Batch, ctx: "_Ctx") -> torch.Tensor:
        """(B, G, C) map of each image over its grid (no grid: G = 1, the image's max)."""
        B, C = ctx.B, values_TC.shape[1]
        if not self.layout.has_grid:
            idx_TC = ctx.inv_T[:, None].expand(-1, C)
            return torch.zeros(B, C).scatter_reduce_(0, idx_TC, values_TC, "amax")[:, None, :]
        G, T = self.layout.G, len(ctx.inv_T)
        if ctx.regular:
            return values_TC.view(B, T // B, C)[:, T // B - G :]  # the usual layout: a view, no copy
        patch_T = ctx.patch_T
        cell_P = batch.y_T[patch_T] * self.layout.grid_W + batch.x_T[patch_T]
        maps_BGC = torch.zeros(B, G, C)
        maps_BGC[ctx.inv_T[patch_T], cell_P] = values_TC[patch_T]
        return maps_BGC

    def finish(self) -> ScanResult:
        out = ScanResult(stats=self.stats.finish(), n_images=self.n_images,
                         class_tokens_L=self.class_tokens_L[: self.L].numpy(),
                         class_images_L=self.class_images_L[: self.L].numpy())  # fmt: skip
        for name, top in self.tops.items():
            score, data = top.sorted()
            out.rankings[name] = Ranked(score.numpy(), data["image"].numpy(), data["map"].float().numpy())
        out.units = {name: u.finish() for name, u in self.units.items()}
        return out


@dataclass
class _Ctx:
    """Per-batch facts shared by every population: images, token -> image, patch mask, labels."""

    images_B: torch.Tensor
    inv_T: torch.Tensor
    patch_T: torch.Tensor
    rest_T: torch.Tensor
    label_B: torch.Tensor
    regular: bool

    @property
    def B(self) -> int:
        return len(self.images_B)

    @classmethod
    def of(cls, batch: Batch, layout: Layout, labels: torch.Tensor) -> "_Ctx":
        images_B, inv_T = torch.unique_consecutive(batch.image_T, return_inverse=True)
        B, T = len(images_B), len(inv_T)
        patch_T = batch.kind_T == KIND_PATCH if layout.has_grid else torch.zeros_like(inv_T, dtype=torch.bool)
        regular = layout.has_grid and T % B == 0 and _regular(batch, B, T // B, layout.G, layout.grid_W)
        known = (images_B >= 0) & (images_B < len(labels))
        label_B = torch.where(known, labels[images_B.clamp(0, max(len(labels) - 1, 0))], -1) if len(labels) else \
            torch.full_like(images_B, -1)  # fmt: skip
        return cls(images_B, inv_T, patch_T, (~patch_T).nonzero(as_tuple=True)[0], label_B, regular)


def _image_sums(values_TC: torch.Tensor, maps_BGC: torch.Tensor | None, ctx: _Ctx) -> torch.Tensor:
    """(B, C) sum over every analysed token of each image: the grid map's sum plus the other tokens."""
    if maps_BGC is None:
        return torch.zeros(ctx.B, values_TC.shape[1]).index_add_(0, ctx.inv_T, values_TC)
    return maps_BGC.sum(1).index_add_(0, ctx.inv_T[ctx.rest_T], values_TC[ctx.rest_T])


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


def scan(store: Any, sae: torch.nn.Module, layout: Layout, labels: np.ndarray, n_classes: int, top: int,
         batch_images: int, *, kinds: frozenset[int] | None = None, **baselines: Any) -> ScanResult:
    """Run the pass over the analysed token kinds with a progress bar over the store's images;
    ``baselines``: the keyword arguments of ``Scan`` (raw_mean_D, random_sae, device, per_image, spare)."""
    return run_scan(Scan(sae, layout, labels, n_classes, top, **baselines), store, batch_images, kinds).finish()


def run_scan(acc: Scan, store: Any, batch_images: int, kinds: frozenset[int] | None = None,
             images: tuple[int, int] | None = None) -> Scan:  # fmt: skip
    """Fold the store's images (``images``: only [a, b) of them, a rank's share; None: all) into ``acc``."""
    seen = 0
    total = int(getattr(store, "n_images", len(acc.labels))) if images is None else images[1] - images[0]
    with make_progress() as progress:
        task = progress.add_task("analyze", total=total, info="")
        for batch, n in iter_batches(store, batch_images, kinds, images):
            acc.add(batch)
            seen += n
            progress.update(task, completed=seen)
    return acc
