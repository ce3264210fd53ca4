"""Near-duplicate images in top lists: one photo cropped, resized or re-encoded counts once.

The streaming pass keeps ``top + spare`` candidates per latent and ranking. Afterwards only the
images among those candidates are looked at again: each gets a small pixel signature of the image
as the model saw it, images whose views are near-duplicates are joined into groups, and every list
keeps the best entry of each group, cut to ``top`` (``collapse``). Definitions: docs/metrics.md,
"Near-duplicate images".

Signature: the gray view, reduced to a THUMB x THUMB thumbnail, seen through WINDOWS: the whole
view and squares covering 70-90% of its side, on a grid of offsets 1/12 of the window's side apart.
Each window is cut into (CELLS + 1)^2 cells; the box means' differences between horizontal and
vertical neighbours (2 * CELLS * (CELLS + 1) numbers, an edge pattern that ignores brightness and
contrast) are scaled to unit norm, with a floor (MIN_RMS gray levels) so a flat image matches nothing.

Two images are near-duplicates when some window of one has a cosine >= MATCH with the whole of the
other: one view shows a window of the other covering at least 70% of its side, up to resampling
(a crop, a resize, a re-encoding; near-identical pixels match at the whole-view window). Groups are
the connected components of that relation, so two crops of one photo join through the photo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

THUMB = 64
"""Side of the gray thumbnail every signature is computed from."""
CELLS = 6
SCALES = (1.0, 0.9, 0.8, 0.7)
"""Window sides, as a share of the view's side: a crop down to 70% of the side (half the area) counts."""
STEP = 1 / 12
"""Offsets between windows of one side, as a share of that side."""
MATCH = 0.88
"""Cosine of signatures at and above which two images are near-duplicates."""
MIN_RMS = 2.0
"""Edge signatures are divided by max(norm, this rms in gray levels): a flat view has no signature."""
ALL_PAIRS = 400
"""With at most this many candidate images every pair is compared; above, the pairs within each latent's lists."""


def windows(scales: Iterable[float] = SCALES, step: float = STEP) -> np.ndarray:
    """(Nw, 3) windows (side, top, left) in units of the view's side; row 0 is the whole view."""
    out = []
    for s in scales:
        n = int(round((1 - s) / (s * step))) + 1 if s < 1 else 1
        out += [(s, oy, ox) for oy in np.linspace(0, 1 - s, n) for ox in np.linspace(0, 1 - s, n)]
    return np.array(out, dtype=np.float64)


WINDOWS = windows()


def thumbnail(view_HWC: np.ndarray) -> np.ndarray:
    """The view in gray, THUMB x THUMB, uint8 (box filter)."""
    return np.asarray(Image.fromarray(np.asarray(view_HWC, dtype=np.uint8)).convert("L").resize((THUMB, THUMB), Image.BOX))


def _corners(win: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Bilinear weights and indices into a (THUMB + 1)^2 integral image at each window's n + 1 cell edges."""
    f = np.linspace(0, 1, n + 1)
    ys = (win[:, 1:2] + win[:, 0:1] * f) * THUMB  # (Nw, n + 1)
    xs = (win[:, 2:3] + win[:, 0:1] * f) * THUMB
    y, x = np.broadcast_arrays(ys[:, :, None], xs[:, None, :])
    y0 = np.minimum(np.floor(y), THUMB - 1).astype(np.int64)
    x0 = np.minimum(np.floor(x), THUMB - 1).astype(np.int64)
    return y0, x0, y - y0, x - x0


def _integral(thumbs_UHW: np.ndarray) -> np.ndarray:
    ii = np.zeros((len(thumbs_UHW), THUMB + 1, THUMB + 1))
    ii[:, 1:, 1:] = np.asarray(thumbs_UHW, dtype=np.float64).cumsum(1).cumsum(2)
    return ii


def _edges(ii_UXX: np.ndarray, win: np.ndarray, per_image: bool = False) -> torch.Tensor:
    """Unit edge signatures of windows of integral images: ``win`` (Nw, 3) for every image, or
    (U, Nw, 3), one set per image (``per_image``). Returns (U, Nw, 2 * CELLS * (CELLS + 1))."""
    U = len(ii_UXX)
    flat = win.reshape(-1, 3)
    y0, x0, fy, fx = _corners(flat, CELLS + 1)  # (U * Nw or Nw, n + 2, n + 2)
    Nw = win.shape[-2]
    if per_image:
        shape = (U, Nw) + y0.shape[1:]
        y0, x0, fy, fx = (a.reshape(shape) for a in (y0, x0, fy, fx))
        u = np.arange(U)[:, None, None, None]
    else:
        u = np.arange(U)[:, None, None, None]
        y0, x0, fy, fx = (a[None] for a in (y0, x0, fy, fx))
    I = (ii_UXX[u, y0, x0] * (1 - fy) * (1 - fx) + ii_UXX[u, y0 + 1, x0] * fy * (1 - fx)
         + ii_UXX[u, y0, x0 + 1] * (1 - fy) * fx + ii_UXX[u, y0 + 1, x0 + 1] * fy * fx)
    box = I[..., 1:, 1:] - I[..., :-1, 1:] - I[..., 1:, :-1] + I[..., :-1, :-1]  # cell sums
    side = win[..., 0] if per_image else np.broadcast_to(win[:, 0], (U, Nw))
    box = box / ((side * THUMB / (CELLS + 1)) ** 2)[..., None, None]  # cell means, gray levels
    edges = np.concatenate([np.diff(box, axis=3).reshape(U, Nw, -1), np.diff(box, axis=2).reshape(U, Nw, -1)], axis=2)
    floor = MIN_RMS * np.sqrt(edges.shape[2])
    return torch.from_numpy(edges / np.maximum(np.linalg.norm(edges, axis=2, keepdims=True), floor)).float()


def signatures(thumbs_UHW: np.ndarray) -> torch.Tensor:
    """(U, Nw, 2 * CELLS * (CELLS + 1)) unit edge signatures of every window of U thumbnails."""
    return _edges(_integral(thumbs_UHW), WINDOWS)


REFINE_FROM = 0.7
"""Pairs whose best window reaches this but not MATCH are looked at again on a finer grid around it."""
_NUDGE = np.array([(ds, dy, dx) for ds in (-0.03, 0.0, 0.03) for dy in np.arange(-2, 3) / 48 for dx in np.arange(-2, 3) / 48])
"""Local grid of the refinement: relative side change, offsets in units of the window's side."""


def _best_windows(sig_UWd: torch.Tensor, blocks: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Within each block (positions into ``sig``), every pair's best cosine between the whole of one
    image and a window of the other. Returns (outer, inner, window, cosine) of the pairs >= REFINE_FROM."""
    Nw, d = sig_UWd.shape[1:]
    out: list[tuple[np.ndarray, ...]] = []
    blocks = [np.unique(b) for b in blocks if len(np.unique(b)) > 1]
    budget = max(1, (64 << 20) // 4)  # floats per bmm output
    i = 0
    while i < len(blocks):
        C = len(blocks[i])
        L = 1
        while i + L < len(blocks) and (L + 1) * max(C, len(blocks[i + L])) ** 2 * Nw <= budget:
            C, L = max(C, len(blocks[i + L])), L + 1
        pos = np.full((L, C), -1, dtype=np.int64)
        for j, b in enumerate(blocks[i : i + L]):
            pos[j, : len(b)] = b
        p = torch.from_numpy(np.maximum(pos, 0))
        full_LCd, win_LXd = sig_UWd[p, 0], sig_UWd[p].reshape(L, C * Nw, d)
        cos_LCCW = torch.bmm(full_LCd, win_LXd.transpose(1, 2)).view(L, C, C, Nw)  # [l, inner, outer, w]
        best, w = cos_LCCW.max(3)
        valid = torch.from_numpy(pos >= 0)
        mask = valid[:, :, None] & valid[:, None, :] & ~torch.eye(C, dtype=torch.bool) & (best >= REFINE_FROM)
        l_, inner, outer = mask.nonzero(as_tuple=True)
        out.append((pos[l_, outer], pos[l_, inner], w[mask].numpy(), best[mask].numpy()))
        i += L
    if not out:
        return tuple(np.zeros(0, t) for t in (np.int64, np.int64, np.int64, np.float32))
    return tuple(np.concatenate(x) for x in zip(*out))


def _refine(ii_UXX: np.ndarray, sig_UWd: torch.Tensor, outer: np.ndarray, inner: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Best cosine of each inner image's whole view with the outer's windows near its best one."""
    base = WINDOWS[w]  # (P, 3)
    side = np.minimum(base[:, None, 0] * (1 + _NUDGE[None, :, 0]), 1.0)
    oy = np.clip(base[:, None, 1] + _NUDGE[None, :, 1] * base[:, None, 0], 0, 1 - side)
    ox = np.clip(base[:, None, 2] + _NUDGE[None, :, 2] * base[:, None, 0], 0, 1 - side)
    out = np.zeros(len(outer), dtype=np.float32)
    for i in range(0, len(outer), 512):
        sl = slice(i, i + 512)
        wins = np.stack([side[sl], oy[sl], ox[sl]], axis=2)
        sig = _edges(ii_UXX[outer[sl]], wins, per_image=True)  # (P, n, d)
        out[sl] = torch.einsum("pnd,pd->pn", sig, sig_UWd[torch.from_numpy(inner[sl]), 0]).amax(1).numpy()
    return out


def similar_pairs(thumbs_UHW: np.ndarray, blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (positions into ``thumbs``) of near-duplicates among the pairs that share a block."""
    ii = _integral(thumbs_UHW)
    sig = _edges(ii, WINDOWS)
    outer, inner, w, cos = _best_windows(sig, blocks)
    close = (cos < MATCH)
    if close.any():
        cos = cos.copy()
        cos[close] = np.maximum(cos[close], _refine(ii, sig, outer[close], inner[close], w[close]))
    keep = cos >= MATCH
    return outer[keep], inner[keep]


class UnionFind:
    """Groups of images (split indices); ``find(i)`` is the smallest image of i's group."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        root = i
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while i != root:
            self.parent[i], i = root, self.parent.get(i, i)
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Groups:
    """Near-duplicate groups of the candidate images."""

    uf: UnionFind
    n_images: int
    """Candidate images that had a signature."""
    unreadable: int
    """Candidate images that could not be read (each its own group)."""

    def of(self, image_X: np.ndarray) -> np.ndarray:
        """Group (smallest member image) of each image; images never grouped are their own group."""
        flat = np.asarray(image_X).ravel()
        return np.array([self.uf.find(int(i)) for i in flat], dtype=np.int64).reshape(np.shape(image_X))

    def sizes(self) -> dict[int, int]:
        """Members of every group of two or more images."""
        count: dict[int, int] = {}
        for i in list(self.uf.parent):
            r = self.uf.find(i)
            count[r] = count.get(r, 0) + 1
        return {r: c for r, c in count.items() if c > 1}


def near_duplicate_groups(lists: list[np.ndarray], view: Callable[[int], np.ndarray | None]) -> Groups:
    """Group the images of ``lists`` (one array of candidate images per latent): every pair of all the
    candidate images when there are at most ALL_PAIRS of them, else the pairs within each list."""
    images = np.unique(np.concatenate([np.asarray(x, dtype=np.int64).ravel() for x in lists] or [np.zeros(0, np.int64)]))
    images = images[images >= 0]
    thumbs, ok = [], []
    for i in images.tolist():
        v = view(i)
        ok.append(v is not None)
        if v is not None:
            thumbs.append(thumbnail(v))
    images_U = images[np.array(ok, dtype=bool)] if len(images) else images
    uf = UnionFind()
    groups = Groups(uf, len(images_U), int(len(images) - len(images_U)))
    if len(images_U) < 2:
        return groups
    pos = {int(img): u for u, img in enumerate(images_U.tolist())}
    if len(images_U) <= ALL_PAIRS:
        blocks = [np.arange(len(images_U))]
    else:
        blocks = [np.array([pos[i] for i in np.asarray(x).ravel().tolist() if i in pos], dtype=np.int64) for x in lists]
    a, b = similar_pairs(np.stack(thumbs), blocks)
    for u, v in zip(a.tolist(), b.tolist()):
        uf.union(int(images_U[u]), int(images_U[v]))
    return groups


def collapse(group_SK: np.ndarray, valid_SK: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the best entry of every group in each best-first list, at most ``top`` of them.

    Returns ``keep_SX`` (S, top): positions of the kept entries in each list, -1 past its end;
    ``dups_SX``: how many entries of the list each kept entry stands for besides itself (entries of
    its group, read until the first entry of a new group that no longer fits); ``dropped_S``: their sum.
    """
    S, K = group_SK.shape
    keep_SX = np.full((S, top), -1, dtype=np.int64)
    dups_SX = np.zeros((S, top), dtype=np.int64)
    dropped_S = np.zeros(S, dtype=np.int64)
    for s in range(S):
        seen: dict[int, int] = {}
        for k in range(K):
            if not valid_SK[s, k]:
                continue
            g = int(group_SK[s, k])
            if g in seen:
                dups_SX[s, seen[g]] += 1
                dropped_S[s] += 1
            elif len(seen) < top:
                keep_SX[s, len(seen)] = k
                seen[g] = len(seen)
            else:
                break
    return keep_SX, dups_SX, dropped_S
