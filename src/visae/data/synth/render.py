"""The rasteriser: factors -> RGB image and part-label map.

Per image: the body-frame geometry is rotated by the pose (one 3x3 matrix for every
point), projected orthographically, sorted far-to-near by anchor depth (painter's
algorithm) and filled with PIL's C polygon fill. The RGB image is drawn at twice the
output size over its background and box-downsampled (anti-aliasing); the part map is
drawn directly at the output size with the same polygons, each filled with its part id,
so thin parts (window bands) keep at least their outline pixels. PIL's pixel i spans
[i, i + 1), so supersampled pixels 2i and 2i+1 (averaged into output pixel i) span the
same interval as output pixel i: ``x_out = x_2x / 2``, and mirroring is ``x -> size - x``. Brightness, channel
gains and sensor noise are applied to the whole chunk at once.
"""

from __future__ import annotations

from math import cos, radians, sin

import numpy as np
from PIL import Image, ImageDraw

from visae.data.synth.background import render_backgrounds
from visae.data.synth.geometry import COLOUR_KEYS, Geometry, variant_geometry

SUPERSAMPLE = 2
BACKGROUND_DIVISOR = 2
"""Backgrounds are smooth: computed at size / 2 and bilinearly upsampled onto the 2x canvas."""
LIGHT = np.array([0.3, -0.6, 0.75]) / np.linalg.norm([0.3, -0.6, 0.75])
"""Light direction in camera coordinates (x right, y down, z towards the viewer)."""


def pose_matrix(f: dict) -> np.ndarray:
    """3x3 map from body coordinates to camera (screen x right, screen y down, depth to viewer)."""
    h, p, b = radians(f["heading"]), radians(f["pitch"]), radians(f["bank"])
    e, a = radians(f["elevation"]), radians(f["angle"])
    Rz = np.array([[cos(h), -sin(h), 0], [sin(h), cos(h), 0], [0, 0, 1]])
    Ry = np.array([[cos(p), 0, -sin(p)], [0, 1, 0], [sin(p), 0, cos(p)]])  # nose up by p
    Rx = np.array([[1, 0, 0], [0, cos(b), -sin(b)], [0, sin(b), cos(b)]])
    right, up, toward = np.array([0, 1, 0]), np.array([-sin(e), 0, cos(e)]), np.array([cos(e), 0, sin(e)])
    camera = np.stack([right, -up, toward])
    roll = np.array([[cos(a), -sin(a), 0], [sin(a), cos(a), 0], [0, 0, 1]])
    flip = np.diag([-1.0 if f["flip"] else 1.0, 1.0, 1.0])
    return flip @ roll @ camera @ Rz @ Ry @ Rx


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def draw_aircraft(rgb: ImageDraw.ImageDraw, part: ImageDraw.ImageDraw, geom: Geometry, f: dict, size2: int) -> None:
    """Draw one aircraft into the supersampled RGB canvas and the output-size part canvas.

    Bodies of revolution are outlined by their projected axis offset by +-radius along
    the axis' screen perpendicular (exact for a cylinder under orthographic projection).
    """
    R = pose_matrix(f)
    P_M3 = geom.points_M3 @ (R * np.asarray(f["proportions"])[None, :]).T.astype(np.float32)
    px = f["scale"] * size2 / geom.extent
    screen_M2 = P_M3[:, :2] * px + np.array([f["center_x"], f["center_y"]], dtype=np.float32) * size2
    axis_K2 = screen_M2[geom.axis_ends_K2[:, 1]] - screen_M2[geom.axis_ends_K2[:, 0]]
    perp_K2 = np.stack([-axis_K2[:, 1], axis_K2[:, 0]], 1) / np.maximum(np.hypot(axis_K2[:, 0], axis_K2[:, 1]), 1e-6)[:, None]
    outline_T2 = screen_M2[geom.src_T] + (geom.coef_T * px)[:, None] * perp_K2[geom.prim_T]
    coords_rgb = outline_T2.ravel().tolist()
    coords_part = (outline_T2 * (1 / SUPERSAMPLE)).ravel().tolist()

    normal_K3 = geom.normal_K3 @ R.T
    shade_K = np.where(geom.body_K, 0.93 if f["elevation"] > 0 else 0.74, 0.62 + 0.38 * np.abs(normal_K3 @ LIGHT))
    palette_C3 = np.array([_rgb(f["colours"][k]) for k in COLOUR_KEYS], dtype=np.float64)
    colour_K = [tuple(c) for c in (palette_C3[geom.colour_K] * shade_K[:, None]).astype(int).tolist()]
    hidden_K = (geom.gear_K & (not f["gear_down"])) | (geom.cull_K & (normal_K3[:, 2] < 0.08))
    depth_K = P_M3[geom.anchor_K, 2] + geom.bias_K
    o = geom.offsets
    for k in np.argsort(depth_K, kind="stable").tolist():
        if hidden_K[k]:
            continue
        rgb.polygon(coords_rgb[2 * o[k]:2 * o[k + 1]], fill=colour_K[k])
        part.polygon(coords_part[2 * o[k]:2 * o[k + 1]], fill=geom.part_K[k])


def _distractor_polys(d: dict, size2: int) -> list[np.ndarray]:
    """Screen polygons of one distractor (bird, balloon, kite, cloud, shape)."""
    s, a = d["size"] * size2, radians(d["angle"])
    c = np.array([d["x"], d["y"]]) * size2
    R = np.array([[cos(a), -sin(a)], [sin(a), cos(a)]])
    kind = d["kind"]
    if kind == "bird":
        wing = np.array([[-0.5, -0.15], [0, 0.12], [0.5, -0.15], [0.5, -0.05], [0, 0.22], [-0.5, -0.05]])
        return [c + wing * s]
    if kind == "balloon":
        t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        env = np.stack([0.4 * np.cos(t), -0.1 + 0.5 * np.sin(t)], 1)
        basket = np.array([[-0.1, 0.5], [0.1, 0.5], [0.1, 0.65], [-0.1, 0.65]])
        return [c + env * s, c + basket * s]
    if kind == "kite":
        return [c + np.array([[0, -0.5], [0.3, 0], [0, 0.5], [-0.3, 0]]) @ R.T * s]
    if kind == "cloud":
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        blob = np.stack([0.3 * np.cos(t), 0.2 * np.sin(t)], 1)
        return [c + (blob + off) * s for off in ([-0.25, 0.05], [0.0, -0.08], [0.25, 0.05], [0.0, 0.1])]
    k = 3 + int(d["angle"]) % 3  # triangle, square or pentagon
    t = np.linspace(0, 2 * np.pi, k, endpoint=False) + a
    return [c + 0.5 * s * np.stack([np.cos(t), np.sin(t)], 1)]


def draw_distractor(rgb: ImageDraw.ImageDraw, part: ImageDraw.ImageDraw | None, d: dict, size2: int) -> None:
    colour = (245, 245, 248) if d["kind"] == "cloud" else (35, 35, 40) if d["kind"] == "bird" else _rgb(d["colour"])
    for poly in _distractor_polys(d, size2):
        rgb.polygon(poly.ravel().tolist(), fill=colour)
        if part is not None:  # in front of the aircraft: hides its parts
            part.polygon((poly * (1 / SUPERSAMPLE)).ravel().tolist(), fill=0)


def render_one(background_HWC: np.ndarray, f: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) and part map (size, size) before photometric jitter.

    ``background_HWC`` may have any resolution; it is bilinearly resized to the canvas.
    """
    size2 = size * SUPERSAMPLE
    canvas = Image.fromarray(background_HWC).resize((size2, size2), Image.BILINEAR)
    parts = Image.new("L", (size, size), 0)
    rgb_draw, part_draw = ImageDraw.Draw(canvas), ImageDraw.Draw(parts)
    for d in f["distractors"]:
        if not d["front"]:
            draw_distractor(rgb_draw, None, d, size2)
    draw_aircraft(rgb_draw, part_draw, variant_geometry(f["variant"]), f, size2)
    for d in f["distractors"]:
        if d["front"]:
            draw_distractor(rgb_draw, part_draw, d, size2)
    return np.asarray(canvas.reduce(SUPERSAMPLE)), np.asarray(parts)


def render_chunk(rng: np.random.Generator, factors: list[dict], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, size, size, 3) uint8 and part maps (n, size, size) uint8 for ``factors``."""
    n = len(factors)
    backgrounds = render_backgrounds(rng, factors, size // BACKGROUND_DIVISOR)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    parts = np.empty((n, size, size), dtype=np.uint8)
    for i, f in enumerate(factors):
        images[i], parts[i] = render_one(backgrounds[i], f, size)
    gain = np.array([np.asarray(f["channel_gain"]) * f["brightness"] for f in factors], dtype=np.float32)
    sigma = np.array([f["noise"] for f in factors], dtype=np.float32)
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    noise *= sigma[:, None, None, None]
    noise += 0.5  # so that the truncating cast below rounds
    images *= gain[:, None, None, :]
    images += noise
    np.clip(images, 0, 255, out=images)
    return images.astype(np.uint8), parts
