"""Small charts drawn with PIL (no plotting library needed): the latent density histogram."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def density_histogram_png(freq_S: np.ndarray, width: int = 560, height: int = 220, bins: int = 30) -> bytes:
    """Histogram of log10 firing frequency over live latents, dead latents noted; PNG bytes."""
    freq_S = np.asarray(freq_S, dtype=np.float64)
    live = freq_S[freq_S > 0]
    lo = float(np.floor(np.log10(live.min()))) if len(live) else -6.0
    edges = np.linspace(min(lo, -1.0), 0.0, bins + 1)
    counts, _ = np.histogram(np.log10(live), bins=edges) if len(live) else (np.zeros(bins, int), edges)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 44, width - 10, 22, height - 34
    d.line([(left, bottom), (right, bottom)], fill="black")
    d.line([(left, top), (left, bottom)], fill="black")
    peak = max(int(counts.max()), 1)
    bar_w = (right - left) / bins
    for i, c in enumerate(counts):
        h = (bottom - top) * c / peak
        d.rectangle([left + i * bar_w + 1, bottom - h, left + (i + 1) * bar_w - 1, bottom], fill=(70, 110, 200))
    for e in range(int(np.ceil(edges[0])), 1):
        x = left + (e - edges[0]) / (edges[-1] - edges[0]) * (right - left)
        d.line([(x, bottom), (x, bottom + 4)], fill="black")
        d.text((x - 10, bottom + 6), f"1e{e}", fill="black")
    d.text((left, height - 14), "firing frequency (log10, share of tokens)", fill="black")
    d.text((4, top - 16), f"latents (max {peak})", fill="black")
    dead = int((freq_S == 0).sum())
    d.text((right - 150, top - 16), f"dead: {dead} of {len(freq_S)}", fill=(180, 30, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
