"""Streaming normalisation statistics: per-dimension mean and variance (Chan/Welford, float64).

The writer folds in each shard as it commits it, in token order, and checkpoints the
float64 state beside the shard, so a resumed extraction ends with bit-identical stats.
Each chunk's mean and M2 accumulate in float64 over float32 values (two passes), then
merge into the float64 running state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from visae.atomic import write_with


class RunningStats:
    """Count, mean_D and M2_D (sum of squared deviations) of every token seen."""

    def __init__(self, d: int):
        self.n = 0
        self.mean_D = np.zeros(d, dtype=np.float64)
        self.m2_D = np.zeros(d, dtype=np.float64)

    def update(self, x_TD: torch.Tensor, chunk: int = 8192) -> None:
        """Fold in float rows, ``chunk`` rows at a time to bound memory."""
        for a in range(0, len(x_TD), chunk):
            self._merge(x_TD[a : a + chunk].float().numpy())

    def _merge(self, x_TD: np.ndarray) -> None:
        # Chan et al.'s parallel update: combine (n_a, mean_a, M2_a) with the chunk's (n_b, mean_b, M2_b).
        n_b = len(x_TD)
        if n_b == 0:
            return
        mean_b = x_TD.mean(axis=0, dtype=np.float64)
        shift_D = mean_b.astype(np.float32)
        dev_TD = x_TD - shift_D
        # sum (x - shift)^2 = M2 + n (mean - shift)^2: remove the rounding of the shift exactly
        m2_b = np.einsum("td,td->d", dev_TD, dev_TD, dtype=np.float64) - n_b * (mean_b - shift_D) ** 2
        n = self.n + n_b
        delta = mean_b - self.mean_D
        self.mean_D = self.mean_D + delta * (n_b / n)
        self.m2_D = self.m2_D + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    @property
    def var_D(self) -> np.ndarray:
        return self.m2_D / max(self.n, 1)

    @property
    def mean_sq_norm(self) -> float:
        """E ||x - mean||^2 over tokens: the sum of the per-dimension variances."""
        return float(self.m2_D.sum() / max(self.n, 1))

    def merged(self, other: "RunningStats") -> "RunningStats":
        """The statistics of both token sets together (Chan et al.'s pairwise merge)."""
        out = RunningStats(len(self.mean_D))
        n = self.n + other.n
        if n == 0:
            return out
        delta = other.mean_D - self.mean_D
        out.n = n
        out.mean_D = self.mean_D + delta * (other.n / n)
        out.m2_D = self.m2_D + other.m2_D + delta**2 * (self.n * other.n / n)
        return out

    def tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        with np.errstate(over="ignore"):  # float32 saturates to inf beyond ~3.4e38, as it should
            mean_D, var_D = self.mean_D.astype(np.float32), self.var_D.astype(np.float32)
        tensors = {
            "mean_D": mean_D,
            "var_D": var_D,
            "n": np.array([self.n], dtype=np.int64),
            "mean_D_f64": self.mean_D,
            "m2_D_f64": self.m2_D,
        }
        return {prefix + k: v for k, v in tensors.items()}

    def save(self, path: Path, by_kind: dict[int, "RunningStats"] | None = None) -> None:
        """All tokens' statistics, and each token kind's under the prefix ``kind<code>/``."""
        tensors = self.tensors()
        for code, st in (by_kind or {}).items():
            tensors.update(st.tensors(f"kind{code}/"))
        write_with(path, lambda tmp: save_file(tensors, str(tmp)))

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], prefix: str = "") -> "RunningStats":
        s = cls(len(t[prefix + "mean_D_f64"]))
        s.n = int(t[prefix + "n"][0])
        s.mean_D = t[prefix + "mean_D_f64"].astype(np.float64)
        s.m2_D = t[prefix + "m2_D_f64"].astype(np.float64)
        return s

    @classmethod
    def load(cls, path: Path) -> "RunningStats":
        return cls.from_tensors(load_file(str(path)))

    @classmethod
    def load_by_kind(cls, path: Path) -> dict[int, "RunningStats"]:
        """Per token kind statistics saved beside the total (empty for single-kind stores)."""
        t = load_file(str(path))
        codes = sorted({int(k.split("/")[0][4:]) for k in t if k.startswith("kind") and "/" in k})
        return {c: cls.from_tensors(t, f"kind{c}/") for c in codes}
