"""Per-image generating factors: pose, scale, livery colours, background, distractors.

Everything an image depends on is drawn here from the chunk's generator, in a fixed
order, and recorded in the manifest (JSON-ready values), so the same seed gives the
same images and every image can be explained by its manifest row.
"""

from __future__ import annotations

import colorsys

import numpy as np

from visae.data.synth.background import sample_background
from visae.data.synth.catalog import FAMILY, MANUFACTURER, VARIANT, part_choices

BODY_COLOURS = np.array([[240, 240, 240], [200, 203, 208], [175, 180, 188], [236, 228, 210], [214, 224, 236]])

DISTRACTORS = ["bird", "balloon", "kite", "cloud", "shape"]
DISTRACTOR_SIZE = {"bird": (0.04, 0.08), "balloon": (0.08, 0.14), "kite": (0.06, 0.12), "cloud": (0.15, 0.3),
                   "shape": (0.05, 0.12)}


def _hex(rgb) -> str:
    r, g, b = (min(255, max(0, round(float(c)))) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def sample_palette(rng: np.random.Generator, variant: str) -> dict[str, str]:
    """Livery colours: a shared body palette, the manufacturer's accent hue (jittered)."""
    man = MANUFACTURER[FAMILY[VARIANT[variant].family].manufacturer]
    body = BODY_COLOURS[rng.integers(len(BODY_COLOURS))] + rng.integers(-10, 11, 3)
    hue = (man.accent_hue + rng.normal(0, 0.025)) % 1.0
    accent = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 0.95), rng.uniform(0.55, 0.95))) * 255
    grey = rng.uniform(120, 175)
    engine = [body, np.array([grey] * 3), accent][rng.choice(3, p=[0.4, 0.45, 0.15])]
    dark = rng.uniform(35, 70)
    return {
        "body": _hex(body),
        "accent": _hex(accent),
        "tail": _hex(accent if rng.random() < 0.75 else body),
        "wing": _hex(body * rng.uniform(0.78, 0.92)),
        "engine": _hex(engine),
        "nose": _hex([dark] * 3),
        "window": _hex([30 + dark * 0.2, 40 + dark * 0.2, 70 + dark * 0.3]),
        "gear": _hex([70, 70, 72]),
        "wheel": _hex([25, 25, 25]),
        "prop": _hex([rng.uniform(70, 115)] * 3),
    }


def sample_distractors(rng: np.random.Generator, difficulty: str = "easy") -> list[dict]:
    """Distractors (birds, balloons, kites, clouds, shapes): ``easy`` 0-1 small ones, never in
    front of the aircraft; ``hard`` 0-3, a quarter of them in front."""
    hard = difficulty == "hard"
    n = int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1])) if hard else int(rng.random() < 0.3)
    out = []
    for _ in range(n):
        kind = DISTRACTORS[rng.integers(len(DISTRACTORS))]
        colour = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
        lo, hi = DISTRACTOR_SIZE[kind]
        out.append({
            "kind": kind,
            "x": round(float(rng.uniform(0.05, 0.95)), 3),
            "y": round(float(rng.uniform(0.05, 0.95)), 3),
            "size": round(float(rng.uniform(lo, hi if hard else (lo + hi) / 2)), 3),
            "angle": round(float(rng.uniform(0, 360)), 1),
            "colour": _hex(np.array(colour) * 255),
            "front": bool(hard and rng.random() < 0.25),
        })
    return out


def _pose_easy(rng: np.random.Generator) -> dict:
    """Mostly top-down (planform) views, any in-plane rotation, large in the frame."""
    return {"elevation": rng.uniform(70, 90), "bank": rng.uniform(-8, 8), "pitch": rng.uniform(-5, 5),
            "scale": rng.uniform(0.8, 0.97)}


def _pose_hard(rng: np.random.Generator) -> dict:
    """Oblique views from above and (a fifth) from below, banked and pitched, smaller."""
    below = rng.random() < 0.2
    return {"elevation": rng.uniform(30, 90) * (-1 if below else 1), "bank": rng.uniform(-25, 25),
            "pitch": rng.uniform(-10, 10), "scale": rng.uniform(0.6, 0.95)}


POSES = {"easy": _pose_easy, "hard": _pose_hard}
"""Pose distribution of each difficulty (see SynthAircraftConfig.difficulty)."""


def sample_factors(rng: np.random.Generator, variant: str, difficulty: str = "easy") -> dict:
    """Every generating factor of one image of ``variant`` (manifest-ready)."""
    f = part_choices(variant)
    pose = POSES[difficulty](rng)
    scale = pose["scale"]
    shift = (1 - scale) * 0.45
    f.update({
        "heading": round(float(rng.uniform(0, 360)), 2),
        "elevation": round(float(pose["elevation"]), 2),
        "bank": round(float(pose["bank"]), 2),
        "pitch": round(float(pose["pitch"]), 2),
        "angle": round(float(rng.uniform(-30, 30)), 2),
        "flip": bool(rng.random() < 0.5),
        "scale": round(float(scale), 4),
        "center_x": round(float(0.5 + rng.uniform(-shift, shift)), 4),
        "center_y": round(float(0.5 + rng.uniform(-shift, shift)), 4),
        "proportions": [round(float(v), 3) for v in rng.uniform(0.93, 1.07, 3)],
        "gear_down": bool(rng.random() < 0.4),
        "colours": sample_palette(rng, variant),
    })
    f.update(sample_background(rng, difficulty))
    f["distractors"] = sample_distractors(rng, difficulty)
    f["brightness"] = round(float(rng.uniform(0.8, 1.15)), 3)
    f["channel_gain"] = [round(float(v), 3) for v in rng.uniform(0.92, 1.08, 3)]
    f["noise"] = round(float(rng.uniform(0, 6)), 2)
    f["difficulty"] = difficulty
    return f
