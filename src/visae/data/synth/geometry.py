"""Aircraft geometry in the body frame, built once per variant from the catalog.

Body frame: x forward (nose at +x), y to the left wing, z up; the standard fuselage is 1
unit long. An aircraft is a list of primitives of two kinds, both cheap to project:

- ``plate``: a flat 3D polygon (wings, tail surfaces, window bands, propeller discs, gear);
- ``body``: a solid of revolution about a straight axis, given by axis points and radii
  (fuselage, nose, engine pods). Under orthographic projection its silhouette is the
  projected axis offset by +-radius perpendicular to it, exact for a cylinder.

Each primitive carries an ``anchor`` point whose depth orders the painter's algorithm
(e.g. a wing half's anchor sits at the span station of its engines, so a pod under the
wing is hidden from above and seen from below).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import cos, radians, sin, tan

import numpy as np

from visae.data.synth.catalog import FAMILY, MANUFACTURER, PART_ID, VARIANT, Family, Variant


@dataclass(frozen=True)
class Prim:
    part: int
    """Part id (index into PART_NAMES)."""
    colour: str
    """Palette key resolved per image (body, accent, wing, engine, nose, window, gear, wheel, prop)."""
    start: int
    """First row of this primitive's points in ``Geometry.points_M3``."""
    stop: int
    anchor: int
    """Row of the anchor point whose depth sorts this primitive."""
    radii: tuple[float, ...] | None = None
    """Radii along the axis for a ``body``; None for a ``plate``."""
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """Plate normal (shading; culling when ``cull``)."""
    cull: bool = False
    """Draw only when the normal faces the camera (paint on the fuselage's visible side)."""
    bias: float = 0.0
    """Added to the anchor depth: paint (windows, stripe) sorts just after its surface."""
    gear: bool = False
    """Landing gear: drawn only when the gear is down."""


COLOUR_KEYS = ("body", "accent", "tail", "wing", "engine", "nose", "window", "gear", "wheel", "prop")
"""Palette keys a primitive can be painted with (see factors.sample_palette)."""


@dataclass(frozen=True)
class Geometry:
    """Primitives plus the index arrays that let the renderer project them all at once."""

    points_M3: np.ndarray
    """Every primitive's points and anchors, stacked (float32)."""
    prims: tuple[Prim, ...]
    extent: float
    """Largest of overall length and span: the unit the renderer scales to the image."""
    # Per primitive (K of them):
    normal_K3: np.ndarray
    anchor_K: np.ndarray
    bias_K: np.ndarray
    cull_K: np.ndarray
    gear_K: np.ndarray
    body_K: np.ndarray
    part_K: list[int]
    colour_K: np.ndarray
    """Index into COLOUR_KEYS."""
    axis_ends_K2: np.ndarray
    """First and last point row of each primitive (bodies: its axis, whose normal offsets the outline)."""
    # Outline vertices (T of them): vertex = point[src] + coef * px * perpendicular of its primitive's axis.
    src_T: np.ndarray
    coef_T: np.ndarray
    prim_T: np.ndarray
    offsets: list[int]
    """Outline vertices of primitive k are rows offsets[k]:offsets[k + 1]."""

    @classmethod
    def of(cls, points_M3: np.ndarray, prims: tuple[Prim, ...], extent: float) -> "Geometry":
        src, coef, owner, offsets = [], [], [], [0]
        for k, p in enumerate(prims):
            rows = list(range(p.start, p.stop))
            if p.radii is None:  # plate: its own vertices
                src += rows
                coef += [0.0] * len(rows)
            else:  # body: axis + radius * perp, then back along axis - radius * perp
                src += rows + rows[::-1]
                coef += list(p.radii) + [-r for r in p.radii[::-1]]
            owner += [k] * (len(src) - offsets[-1])
            offsets.append(len(src))
        return cls(
            points_M3=points_M3, prims=prims, extent=extent,
            normal_K3=np.array([p.normal for p in prims]),
            anchor_K=np.array([p.anchor for p in prims]),
            bias_K=np.array([p.bias for p in prims]),
            cull_K=np.array([p.cull for p in prims]),
            gear_K=np.array([p.gear for p in prims]),
            body_K=np.array([p.radii is not None for p in prims]),
            part_K=[p.part for p in prims],
            colour_K=np.array([COLOUR_KEYS.index(p.colour) for p in prims]),
            axis_ends_K2=np.array([(p.start, p.stop - 1) for p in prims]),
            src_T=np.array(src), coef_T=np.array(coef, dtype=np.float32), prim_T=np.array(owner), offsets=offsets,
        )


class _Builder:
    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.n = 0
        self.prims: list[Prim] = []

    def _add_points(self, pts: np.ndarray) -> tuple[int, int]:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        self.rows.append(pts)
        start = self.n
        self.n += len(pts)
        return start, self.n

    def plate(self, part: str, colour: str, pts, anchor=None, normal=(0, 0, 1), **kw) -> None:
        start, stop = self._add_points(pts)
        a, _ = self._add_points(np.mean(pts, axis=0) if anchor is None else anchor)
        n = np.asarray(normal, dtype=np.float64)
        n = tuple(float(c) for c in n / np.linalg.norm(n))
        self.prims.append(Prim(PART_ID[part], colour, start, stop, a, normal=n, **kw))

    def body(self, part: str, colour: str, axis, radii, anchor=None, **kw) -> None:
        start, stop = self._add_points(axis)
        a, _ = self._add_points(np.mean(axis, axis=0) if anchor is None else anchor)
        self.prims.append(Prim(PART_ID[part], colour, start, stop, a, radii=tuple(float(r) for r in radii), **kw))

    def build(self, extent: float) -> Geometry:
        return Geometry.of(np.concatenate(self.rows).astype(np.float32), tuple(self.prims), extent)


NOSE_PROFILES: dict[str, tuple[float, list[float], list[float]]] = {
    # name: (length in fuselage radii, stations 0..1, radius fractions)
    "pointed": (2.6, [0, 0.3, 0.6, 0.85, 1], [1, 0.85, 0.55, 0.25, 0.04]),
    "round": (1.3, [0, 0.4, 0.7, 0.9, 1], [1, 0.92, 0.71, 0.44, 0.1]),
    "blunt": (1.6, [0, 0.5, 0.8, 1], [1, 0.85, 0.62, 0.38]),
    "needle": (4.0, [0, 0.25, 0.5, 0.75, 1], [1, 0.7, 0.42, 0.18, 0.02]),
}

WINGS: dict[str, dict[str, float]] = {
    # half span, root chord, tip chord, leading-edge sweep (deg), root LE x as a fraction of fuselage length
    "straight": dict(b=0.62, cr=0.17, ct=0.11, sweep=3.0, x=0.12),
    "swept": dict(b=0.55, cr=0.25, ct=0.07, sweep=33.0, x=0.16),
    "delta": dict(b=0.38, cr=0.56, ct=0.03, sweep=58.0, x=0.2),
}

ENGINE_STATIONS: dict[str, tuple[str, list[float]]] = {
    # layout: (kind, span fractions between fuselage side and tip)
    "none": ("none", []),
    "nose_prop": ("nose", []),
    "wing_props2": ("prop", [0.3]),
    "wing_props4": ("prop", [0.22, 0.55]),
    "wing_pods2": ("pod", [0.3]),
    "wing_pods4": ("pod", [0.22, 0.58]),
    "tail_pods2": ("tail", []),
}


def _circle_yz(x: float, y: float, z: float, r: float, n: int = 10) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.full(n, x), y + r * np.cos(t), z + r * np.sin(t)], axis=1)


def _circle_xz(x: float, y: float, z: float, r: float, n: int = 8) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([x + r * np.cos(t), np.full(n, y), z + r * np.sin(t)], axis=1)


def _fuselage(g: _Builder, L: float, r: float, nose: str, dark_nose: bool, stripe_at: float) -> float:
    """Fuselage, nose, windshield and livery ring; returns the x of the nose tip."""
    xs = [-L / 2, -L / 2 + 0.1, -L / 2 + 0.22, L / 2]
    g.body("fuselage", "body", [(x, 0, 0) for x in xs], [0.35 * r, 0.72 * r, r, r], anchor=(0, 0, 0))
    n_len, st, rf = NOSE_PROFILES[nose]
    n_len *= r
    g.body("nose", "nose" if dark_nose else "body",
           [(L / 2 + t * n_len, 0, 0) for t in st], [f * r for f in rf], anchor=(L / 2 + n_len / 3, 0, 0))
    # Windshield: a dark panel on top of the nose, just ahead of the cabin.
    x1, x2 = L / 2 + 0.05 * n_len, L / 2 + 0.4 * n_len
    r1, r2 = r * np.interp(0.05, st, rf), r * np.interp(0.4, st, rf)
    c, s = cos(radians(50)), sin(radians(50))
    g.plate("window", "window", [(x1, c * r1, s * r1), (x2, c * r2, s * r2), (x2, -c * r2, s * r2), (x1, -c * r1, s * r1)],
            anchor=(0, 0, 0), normal=(0.35, 0, 1), cull=True, bias=3e-4)
    # Livery ring around the rear fuselage, slightly proud of the skin so it paints over it.
    xr = -L / 2 + 0.22 + stripe_at * (L - 0.3)
    g.body("stripe", "accent", [(xr - 0.045, 0, 0), (xr + 0.045, 0, 0)], [1.04 * r, 1.04 * r], anchor=(0, 0, 0), bias=1e-4)
    return L / 2 + n_len


def _windows(g: _Builder, L: float, r: float, rows: int) -> None:
    """Cabin window bands on both sides (only the side facing the camera is drawn)."""
    for row in range(rows):
        phi, half = radians(20 + 32 * row), radians(10)
        x1, x2 = L / 2 - 0.06, (-L / 2 + 0.26) if row == 0 else (L / 2 - 0.55 * L)
        for side in (1, -1):
            pts = [(x1, side * r * cos(phi - half), r * sin(phi - half)), (x2, side * r * cos(phi - half), r * sin(phi - half)),
                   (x2, side * r * cos(phi + half), r * sin(phi + half)), (x1, side * r * cos(phi + half), r * sin(phi + half))]
            g.plate("window", "window", pts, anchor=(0, 0, 0), normal=(0, side * cos(phi), sin(phi)), cull=True, bias=2e-4)


def _wing_le_x(w: dict[str, float], L: float, y: float) -> float:
    return w["x"] * L - y * tan(radians(w["sweep"]))


def _wings(g: _Builder, fam: Family, var: Variant, L: float, r: float) -> tuple[dict[str, float], float]:
    """Two wing halves (+ winglets); returns the planform table and the wing's z."""
    w = WINGS[fam.planform]
    z = -0.6 * r if fam.wing_mount == "low" else 0.75 * r
    dih = radians(0 if fam.planform == "delta" else (5 if fam.wing_mount == "low" else 1))
    b, t = w["b"], tan(radians(w["sweep"]))
    stations = ENGINE_STATIONS[var.engines][1]
    ya = r + (stations[0] if stations else 0.3) * (b - r)
    for s in (1, -1):
        le0, le_tip = w["x"] * L, w["x"] * L - b * t
        zt = z + b * tan(dih)
        pts = [(le0, 0, z), (le_tip, s * b, zt), (le_tip - w["ct"], s * b, zt), (le0 - w["cr"], 0, z)]
        xa = _wing_le_x(w, L, ya) - 0.5 * (w["cr"] + (w["ct"] - w["cr"]) * ya / b)
        g.plate("wing", "wing", pts, anchor=(xa, s * ya, z + ya * tan(dih)), normal=(0, -s * sin(dih), cos(dih)))
        if var.winglets:
            h = 0.07
            wl = [(le_tip, s * b, zt), (le_tip - w["ct"], s * b, zt), (le_tip - w["ct"] - 0.01, s * b, zt + h),
                  (le_tip - 0.05, s * b, zt + h)]
            g.plate("wing", "wing", wl, normal=(0, 1, 0))
    return w, z


def _engines(g: _Builder, var: Variant, w: dict[str, float], z_w: float, L: float, r: float, nose_x: float) -> None:
    kind, stations = ENGINE_STATIONS[var.engines]
    if kind == "nose":
        g.plate("propeller", "prop", _circle_yz(nose_x + 0.01, 0, 0, 0.15, 12), normal=(1, 0, 0))
    for f in stations:
        for s in (1, -1):
            y = r + f * (w["b"] - r)
            front = _wing_le_x(w, L, y) + 0.08
            if kind == "pod":
                zp = z_w - 0.065
                g.body("engine", "engine", [(front, s * y, zp), (front - 0.04, s * y, zp), (front - 0.2, s * y, zp)],
                       [0.036, 0.044, 0.028], anchor=(front - 0.1, s * y, zp))
            else:
                g.body("engine", "engine", [(front, s * y, z_w), (front - 0.05, s * y, z_w), (front - 0.2, s * y, z_w)],
                       [0.03, 0.036, 0.015])
                g.plate("propeller", "prop", _circle_yz(front + 0.012, s * y, z_w, 0.11, 10), normal=(1, 0, 0))
    if kind == "tail":
        for s in (1, -1):
            y, x0, zp = r + 0.045, -L / 2 + 0.36, 0.35 * r
            g.body("engine", "engine", [(x0, s * y, zp), (x0 - 0.04, s * y, zp), (x0 - 0.19, s * y, zp)], [0.036, 0.044, 0.03])


def _surface(g: _Builder, span_dir, c_root: float, c_tip: float, span: float, sweep: float,
             root, colour: str, normal) -> None:
    """A tail surface: root chord at ``root`` (LE x, y, z), spanning along ``span_dir``."""
    d = np.asarray(span_dir, dtype=np.float64)
    r0 = np.asarray(root, dtype=np.float64)
    le_tip = r0 + span * d + np.array([-span * tan(radians(sweep)), 0, 0])
    pts = [r0, le_tip, le_tip - [c_tip, 0, 0], r0 - [c_root, 0, 0]]
    g.plate("tail", colour, pts, normal=normal)


def _tail(g: _Builder, fam: Family, L: float, r: float) -> None:
    x_te = -L / 2 + 0.02
    up, zf = (0, 0, 1), 0.45 * r
    if fam.tail in ("conventional", "t_tail", "fin"):
        cr, ct, h, sw = {"conventional": (0.17, 0.08, 0.17, 35), "t_tail": (0.18, 0.12, 0.18, 30),
                         "fin": (0.27, 0.07, 0.2, 52)}[fam.tail]
        _surface(g, up, cr, ct, h, sw, (x_te + cr, 0, zf), "tail", (0, 1, 0))
    if fam.tail == "conventional":
        for s in (1, -1):
            _surface(g, (0, s, 0), 0.11, 0.05, 0.19, 30, (x_te + 0.13, 0, 0.2 * r), "body", (0, 0, 1))
    elif fam.tail == "t_tail":
        x_le = x_te + 0.18 - 0.18 * tan(radians(30)) + 0.01
        for s in (1, -1):
            _surface(g, (0, s, 0), 0.11, 0.06, 0.18, 25, (x_le, 0, zf + 0.18), "body", (0, 0, 1))
    elif fam.tail == "twin":
        for s in (1, -1):
            _surface(g, (0, s, 0), 0.12, 0.1, 0.2, 10, (x_te + 0.14, 0, 0.1 * r), "body", (0, 0, 1))
            _surface(g, up, 0.11, 0.07, 0.12, 25, (x_te + 0.13 - 0.2 * tan(radians(10)), s * 0.2, 0.1 * r),
                     "tail", (0, 1, 0))
    elif fam.tail == "v_tail":
        a = radians(35)
        for s in (1, -1):
            _surface(g, (0, s * cos(a), sin(a)), 0.15, 0.06, 0.21, 35, (x_te + 0.15, 0, zf), "tail",
                     (0, -s * sin(a), cos(a)))


def _gear(g: _Builder, w: dict[str, float], L: float, r: float) -> None:
    legs = [(L / 2 - 0.1, 0.0, 0.07)] + [(w["x"] * L - 0.6 * w["cr"], s * 0.8 * r, 0.08) for s in (1, -1)]
    for x, y, h in legs:
        top, bot = -0.7 * r, -r - h
        g.plate("gear", "gear", [(x + 0.01, y, top), (x - 0.01, y, top), (x - 0.01, y, bot), (x + 0.01, y, bot)],
                normal=(0, 1, 0), gear=True)
        g.plate("gear", "wheel", _circle_xz(x, y, bot, 0.028), normal=(0, 1, 0), gear=True)


@lru_cache(maxsize=None)
def variant_geometry(name: str) -> Geometry:
    """The body-frame geometry of catalog variant ``name`` (cached)."""
    var = VARIANT[name]
    fam = FAMILY[var.family]
    man = MANUFACTURER[fam.manufacturer]
    g = _Builder()
    L, r = var.length, fam.girth
    nose_x = _fuselage(g, L, r, man.nose, man.dark_nose, man.stripe_at)
    _windows(g, L, r, var.window_rows)
    w, z_w = _wings(g, fam, var, L, r)
    _engines(g, var, w, z_w, L, r, nose_x)
    _tail(g, fam, L, r)
    _gear(g, w, L, r)
    extent = max(nose_x + L / 2, 2 * w["b"])
    return g.build(extent)
