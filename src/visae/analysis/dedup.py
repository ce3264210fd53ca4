"""Near-duplicate images in top lists: one photo cropped, resized or re-encoded counts once.

The streaming pass keeps ``top + spare`` candidates per latent and ranking. Afterwards only the
images among those candidates are looked at again: each gets a small pixel signature of the image
as the model saw it, pairs of near-duplicates are found (``near_duplicates``), and every list keeps
the best entry of each photo (``collapse``), cut to ``top``. Definitions: docs/metrics.md,
"Near-duplicate images".

Signature: the gray view, reduced to a THUMB x THUMB thumbnail, seen through WINDOWS: the whole
view and squares covering 90%, 80% and 70% of its side, at offsets 1/12 of the window's side apart.
Each window is cut into (CELLS + 1)^2 cells; the differences of the cell means between horizontal
and vertical neighbours (2 * CELLS * (CELLS + 1) numbers), each kind minus its mean (an edge pattern
that ignores brightness, a linear brightness ramp and contrast), are scaled to unit norm, with a
floor (MIN_RMS gray levels) so a flat view matches nothing.

Two images are near-duplicates when the whole of one has a cosine >= MATCH with some window of the
other (refined on a finer grid around the best window when it reaches REFINE_FROM): one view shows,
up to resampling, a window of the other covering at least 70% of its side. In a list an entry is
dropped when it is a near-duplicate of a better entry kept, or both are near-duplicates of one
image (two crops of a photo, neither containing the other, meet in the photo); longer chains are
not followed, so renders that differ a little at each step do not merge into one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

THUMB = 64
"""Side of the gray thumbnail every signature is computed from."""
CELLS = 8
SCALES = (1.0, 0.9, 0.8, 0.7)
"""Window sides, as a share of the view's side: a crop down to 70% of the side (half the area) counts."""
STEP = 1 / 12
"""Offsets between windows of one side, as a share of that side."""
MATCH = 0.8
"""Cosine of signatures at and above which two images are near-duplicates."""
REFINE_FROM = 0.65
"""Pairs whose best window reaches this but not MATCH are compared again on a finer grid around it."""
MIN_RMS = 2.0
"""Edge signatures are divided by max(norm, this rms in gray levels): a flat view has no signature."""
ALL_PAIRS = 400
"""With at most this many candidate images every pair is compared; above, the pairs within each list."""
_NUDGE = np.array([(ds, dy, dx) for ds in (-0.03, 0.0, 0.03) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=float)
_NUDGE[:, 1:] *= STEP / 2
"""Refinement grid: relative change of the side, offsets in units of the window's side."""


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


def _corners(win: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Where to read the (CELLS + 2)^2 cell corners of each of Nw windows (side, top, left; units of the
    view's side) in a flattened (THUMB + 1)^2 integral image: flat indices and bilinear weights of the 4
    pixels around each corner, (Nw * (CELLS + 2)^2 * 4,) each."""
    f = np.linspace(0, 1, CELLS + 2)
    y, x = np.broadcast_arrays(((win[:, 1:2] + win[:, 0:1] * f) * THUMB)[:, :, None],
                               ((win[:, 2:3] + win[:, 0:1] * f) * THUMB)[:, None, :])  # fmt: skip
    y0 = np.minimum(np.floor(y), THUMB - 1).astype(np.int64)
    x0 = np.minimum(np.floor(x), THUMB - 1).astype(np.int64)
    fy, fx = y - y0, x - x0
    W1 = THUMB + 1
    idx = np.stack([y0 * W1 + x0, (y0 + 1) * W1 + x0, y0 * W1 + x0 + 1, (y0 + 1) * W1 + x0 + 1], axis=-1)
    wts = np.stack([(1 - fy) * (1 - fx), fy * (1 - fx), (1 - fy) * fx, fy * fx], axis=-1)
    return torch.from_numpy(idx.ravel()), torch.from_numpy(wts.ravel().astype(np.float32))


_GEOMETRY = _corners(WINDOWS)


def _integral(thumbs_UHW: np.ndarray) -> torch.Tensor:
    """(U, THUMB + 1, THUMB + 1) integral images (exact in float32: at most 64 * 64 * 255)."""
    T = torch.from_numpy(np.asarray(thumbs_UHW, dtype=np.float32))
    ii = torch.zeros(len(T), THUMB + 1, THUMB + 1)
    ii[:, 1:, 1:] = T.cumsum(1).cumsum(2)
    return ii


def _corner_sums(ii: torch.Tensor, win: np.ndarray) -> torch.Tensor:
    """(U, Nw, n, n) integral image at each window's cell corners (n = CELLS + 2), read bilinearly since
    the corners fall between pixels; ``win`` (Nw, 3) for every image, or (U, Nw, 3) one set per image."""
    U, n, Nw = len(ii), CELLS + 2, win.shape[-2]
    if win.ndim == 2:  # the same windows everywhere: one precomputed gather
        idx, wts = _GEOMETRY if win is WINDOWS else _corners(win)
        return (ii.flatten(1)[:, idx] * wts).view(U, Nw, n, n, 4).sum(4)
    w = torch.from_numpy(win.astype(np.float32))
    f = torch.linspace(0, 1, n)
    ys = ((w[..., 1:2] + w[..., 0:1] * f) * THUMB).reshape(U, Nw * n)
    xs = ((w[..., 2:3] + w[..., 0:1] * f) * THUMB).reshape(U, Nw, 1, n)
    y0, x0 = ys.floor().clamp(max=THUMB - 1), xs.floor().clamp(max=THUMB - 1)
    fy, fx = (ys - y0)[..., None], xs - x0
    y0, x0 = y0.long(), x0.long().expand(U, Nw, n, n)

    def rows(y: torch.Tensor) -> torch.Tensor:
        return torch.gather(ii.flatten(1, 1), 1, y[..., None].expand(U, Nw * n, THUMB + 1))

    R = (rows(y0) * (1 - fy) + rows(y0 + 1) * fy).view(U, Nw, n, THUMB + 1)  # rows, then columns
    return torch.gather(R, 3, x0) * (1 - fx) + torch.gather(R, 3, x0 + 1) * fx


def _edges(thumbs_UHW: np.ndarray, win: np.ndarray) -> torch.Tensor:
    """Unit edge signatures (U, Nw, 2 * CELLS * (CELLS + 1)) of windows of U thumbnails: ``win`` (Nw, 3)
    for every thumbnail, or (U, Nw, 3), one set per thumbnail."""
    I = _corner_sums(_integral(thumbs_UHW), win)
    n = CELLS + 2
    side = torch.from_numpy(np.broadcast_to(win[..., 0], I.shape[:2]).astype(np.float32))
    box = I[..., 1:, 1:] - I[..., :-1, 1:] - I[..., 1:, :-1] + I[..., :-1, :-1]  # cell sums
    box = box / ((side * THUMB / (n - 1)) ** 2)[..., None, None]  # cell means, gray levels
    dx, dy = box.diff(dim=3).flatten(2), box.diff(dim=2).flatten(2)
    # minus their means: a linear ramp of brightness (a sky gradient) leaves no trace
    edges = torch.cat([dx - dx.mean(2, keepdim=True), dy - dy.mean(2, keepdim=True)], dim=2)
    floor = MIN_RMS * edges.shape[2] ** 0.5
    return edges / edges.norm(dim=2, keepdim=True).clamp_min(floor)


def signatures(thumbs_UHW: np.ndarray, batch: int = 256, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(U, Nw, 2 * CELLS * (CELLS + 1)) unit edge signatures of every window of U thumbnails."""
    out = torch.empty(len(thumbs_UHW), len(WINDOWS), 2 * CELLS * (CELLS + 1), dtype=dtype)
    for i in range(0, len(thumbs_UHW), batch):
        out[i : i + batch] = _edges(thumbs_UHW[i : i + batch], WINDOWS)
    return out


def _best_windows(sig_UWd: torch.Tensor, blocks: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Within each block (positions into ``sig``), every pair's best cosine between the whole of one
    image and a window of the other. Returns (outer, inner, window, cosine) of the pairs >= REFINE_FROM."""
    Nw, d = sig_UWd.shape[1:]
    out: list[tuple[np.ndarray, ...]] = []
    blocks = [u for u in (np.unique(b) for b in blocks) if len(u) > 1]
    blocks.sort(key=len)
    budget = 16 << 20  # floats per batch of block products
    i = 0
    while i < len(blocks):
        L = 1
        while i + L < len(blocks) and (L + 1) * len(blocks[i + L]) ** 2 * Nw <= budget:
            L += 1
        C = len(blocks[i + L - 1])
        pos = np.full((L, C), -1, dtype=np.int64)
        for j, b in enumerate(blocks[i : i + L]):
            pos[j, : len(b)] = b
        p = torch.from_numpy(np.maximum(pos, 0))
        full_LCd, win_LXd = sig_UWd[p, 0].float(), sig_UWd[p].reshape(L, C * Nw, d).float()
        best, w = torch.bmm(full_LCd, win_LXd.transpose(1, 2)).view(L, C, C, Nw).max(3)  # [l, inner, outer]
        valid = torch.from_numpy(pos >= 0)
        mask = valid[:, :, None] & valid[:, None, :] & ~torch.eye(C, dtype=torch.bool) & (best >= REFINE_FROM)
        l_, inner, outer = (t.numpy() for t in mask.nonzero(as_tuple=True))
        out.append((pos[l_, outer], pos[l_, inner], w[mask].numpy(), best[mask].numpy()))
        i += L
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return tuple(np.concatenate(x) for x in zip(*out))


def _refine(thumbs_UHW: np.ndarray, sig_UWd: torch.Tensor, outer: np.ndarray, inner: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Best cosine of each inner image's whole view with the outer's windows near its best one."""
    base = WINDOWS[w][:, None, :]  # (P, 1, 3)
    side = np.minimum(base[..., 0] * (1 + _NUDGE[None, :, 0]), 1.0)
    oy = np.clip(base[..., 1] + _NUDGE[None, :, 1] * base[..., 0], 0, 1 - side)
    ox = np.clip(base[..., 2] + _NUDGE[None, :, 2] * base[..., 0], 0, 1 - side)
    wins = np.stack([side, oy, ox], axis=2)  # (P, n, 3)
    out = np.zeros(len(outer), dtype=np.float32)
    for i in range(0, len(outer), 1024):
        sl = slice(i, i + 1024)
        sig = _edges(thumbs_UHW[outer[sl]], wins[sl])
        out[sl] = torch.einsum("pnd,pd->pn", sig, sig_UWd[torch.from_numpy(inner[sl]), 0].float()).amax(1).numpy()
    return out


def similar_pairs(thumbs_UHW: np.ndarray, blocks: list[np.ndarray], chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (positions into ``thumbs``) of near-duplicates among the pairs that share a block. Blocks
    are taken in runs whose images number at most about ``chunk``, whose signatures (float16, 9.6 KB an
    image) are computed for that run only: memory stays near 160 MB whatever the number of candidates."""
    out_a, out_b = [], []
    i = 0
    while i < len(blocks):
        run, members = [], set()
        while i < len(blocks) and (not run or len(members) + len(blocks[i]) <= chunk):
            run.append(blocks[i])
            members.update(blocks[i].tolist())
            i += 1
        ids = np.array(sorted(members), dtype=np.int64)
        local = {g: j for j, g in enumerate(ids.tolist())}
        thumbs = thumbs_UHW[ids]
        sig = signatures(thumbs, dtype=torch.float16)
        outer, inner, w, cos = _best_windows(sig, [np.array([local[g] for g in b.tolist()], dtype=np.int64) for b in run])
        close = cos < MATCH
        if close.any():
            cos = cos.copy()
            cos[close] = np.maximum(cos[close], _refine(thumbs, sig, outer[close], inner[close], w[close]))
        keep = cos >= MATCH
        out_a.append(ids[outer[keep]])
        out_b.append(ids[inner[keep]])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


@dataclass
class Neighbours:
    """The near-duplicates found among the candidate images (split indices)."""

    of: dict[int, set[int]] = field(default_factory=dict)
    """Each image with a near-duplicate, and its near-duplicates."""
    n_images: int = 0
    """Candidate images compared."""
    unreadable: int = 0
    """Candidate images that could not be read (compared with nothing)."""

    def add(self, a: int, b: int) -> None:
        if a != b:
            self.of.setdefault(a, set()).add(b)
            self.of.setdefault(b, set()).add(a)

    def around(self, image: int) -> set[int]:
        """The image and its near-duplicates."""
        return self.of.get(image, set()) | {image}


def near_duplicates(lists: list[np.ndarray], view: Callable[[int], np.ndarray | None]) -> Neighbours:
    """The near-duplicate pairs among the images of ``lists`` (one array of candidate images per list):
    every pair of all the candidate images when there are at most ALL_PAIRS of them, else the pairs
    within each list."""
    arrays = [np.asarray(x, dtype=np.int64).ravel() for x in lists]
    images = np.unique(np.concatenate(arrays)) if arrays else np.zeros(0, np.int64)
    images = images[images >= 0]
    thumbs, readable = [], []
    for i in images.tolist():
        v = view(i)
        if v is not None:
            thumbs.append(thumbnail(v))
            readable.append(i)
    out = Neighbours(n_images=len(readable), unreadable=len(images) - len(readable))
    if len(readable) < 2:
        return out
    if len(readable) <= ALL_PAIRS:
        blocks = [np.arange(len(readable))]
    else:
        pos = {img: u for u, img in enumerate(readable)}
        blocks = [np.array([pos[i] for i in x.tolist() if i in pos], dtype=np.int64) for x in arrays]
    a, b = similar_pairs(np.stack(thumbs), blocks)
    for u, v in zip(a.tolist(), b.tolist()):
        out.add(readable[u], readable[v])
    return out


def collapse(image_SK: np.ndarray, valid_SK: np.ndarray, top: int, near: Neighbours | None,
             per_group: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Walk each best-first list and keep an entry unless ``per_group`` entries already kept are of the
    same photo (the same image, a near-duplicate of it, or a near-duplicate of one of its near-duplicates),
    at most ``top`` entries (``near`` None: images are compared by index only).

    Returns ``keep_SX`` (S, top): positions of the kept entries in each list, -1 past its end;
    ``group_SX``: the slot of the first kept entry of each kept entry's photo (distinct photos =
    distinct values); ``dups_SX``: entries of the list each kept entry stands for besides itself (read
    until the first entry that no longer fits); ``dropped_S``: their sum per list.
    """
    S, K = image_SK.shape
    keep_SX = np.full((S, top), -1, dtype=np.int64)
    group_SX = np.full((S, top), -1, dtype=np.int64)
    dups_SX = np.zeros((S, top), dtype=np.int64)
    dropped_S = np.zeros(S, dtype=np.int64)
    around = (lambda i: {i}) if near is None else near.around
    for s in range(S):
        kept: list[tuple[set[int], int]] = []  # (images around a kept entry, its group slot)
        n = 0
        for k in range(K):
            if not valid_SK[s, k]:
                continue
            mine = around(int(image_SK[s, k]))
            same = [g for a, g in kept if not a.isdisjoint(mine)]
            if len(same) >= per_group:
                dups_SX[s, same[0]] += 1
                dropped_S[s] += 1
            elif n < top:
                keep_SX[s, n], group_SX[s, n] = k, same[0] if same else n
                kept.append((mine, group_SX[s, n]))
                n += 1
            else:
                break
    return keep_SX, group_SX, dups_SX, dropped_S
