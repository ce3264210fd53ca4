"""The aircraft catalog: parts, manufacturer styles, families and variants.

A **variant** (the class label) is one combination of part choices: wing planform and
mount, engine layout, tail type, fuselage length, window rows, winglets. A **family**
fixes most of them (planform, mount, tail, fuselage girth); its variants differ in one or
two parts. A **manufacturer** fixes the style: nose shape, livery accent hue, where the
livery stripe sits, whether the nose is painted dark. Variants marked ``ood`` are
withheld from train/val and make up the ``ood`` split: new part combinations of known
families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from visae.data.base import Hierarchy

PART_NAMES: list[str] = [
    "background",
    "fuselage",
    "nose",
    "wing",
    "engine",
    "tail",
    "window",
    "gear",
    "stripe",
    "propeller",
]
"""Part ids of the part maps, in id order (0 = background: sky, ground, clouds, distractors)."""

PART_ID: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}

Planform = Literal["straight", "swept", "delta"]
Mount = Literal["low", "high"]
Engines = Literal["none", "nose_prop", "wing_props2", "wing_props4", "wing_pods2", "wing_pods4", "tail_pods2"]
Tail = Literal["conventional", "t_tail", "twin", "v_tail", "fin"]
Nose = Literal["pointed", "round", "blunt", "needle"]


@dataclass(frozen=True)
class Manufacturer:
    name: str
    nose: Nose
    """Nose shape shared by every aircraft of the manufacturer."""
    accent_hue: float
    """Hue (0..1) of the livery accent (stripe, often the tail); jittered per image."""
    stripe_at: float
    """Where the livery ring sits along the fuselage (0 = tail end, 1 = nose end)."""
    dark_nose: bool
    """Whether the nose (radome) is painted dark instead of the body colour."""


@dataclass(frozen=True)
class Family:
    name: str
    manufacturer: str
    planform: Planform
    wing_mount: Mount
    tail: Tail
    girth: float
    """Fuselage radius as a fraction of the standard fuselage length."""


@dataclass(frozen=True)
class Variant:
    name: str
    family: str
    engines: Engines
    length: float
    """Fuselage length (without nose) relative to the standard 1.0."""
    window_rows: int
    """0, 1 or 2 rows of cabin windows on each side."""
    winglets: bool = False
    ood: bool = False
    """Withheld from train/val; appears only in the ``ood`` split."""


MANUFACTURERS: list[Manufacturer] = [
    Manufacturer("Aerion", nose="pointed", accent_hue=0.0, stripe_at=0.25, dark_nose=False),
    Manufacturer("Borealis", nose="round", accent_hue=0.6, stripe_at=0.55, dark_nose=False),
    Manufacturer("Cumulus", nose="blunt", accent_hue=0.33, stripe_at=0.4, dark_nose=True),
    Manufacturer("Dynastar", nose="needle", accent_hue=0.09, stripe_at=0.3, dark_nose=False),
    Manufacturer("Equinox", nose="round", accent_hue=0.78, stripe_at=0.7, dark_nose=True),
]

FAMILIES: list[Family] = [
    Family("Strato", "Aerion", planform="swept", wing_mount="low", tail="conventional", girth=0.07),
    Family("Skyvan", "Aerion", planform="straight", wing_mount="high", tail="t_tail", girth=0.08),
    Family("Polar", "Borealis", planform="swept", wing_mount="low", tail="t_tail", girth=0.065),
    Family("Tundra", "Borealis", planform="straight", wing_mount="high", tail="twin", girth=0.085),
    Family("Meadow", "Cumulus", planform="straight", wing_mount="low", tail="conventional", girth=0.06),
    Family("Nimbus", "Cumulus", planform="swept", wing_mount="high", tail="t_tail", girth=0.075),
    Family("Arrow", "Dynastar", planform="delta", wing_mount="low", tail="fin", girth=0.06),
    Family("Comet", "Dynastar", planform="swept", wing_mount="low", tail="v_tail", girth=0.06),
    Family("Zenith", "Equinox", planform="delta", wing_mount="high", tail="twin", girth=0.07),
    Family("Horizon", "Equinox", planform="swept", wing_mount="low", tail="conventional", girth=0.08),
]

VARIANTS: list[Variant] = [
    # Within a family every pair differs in the engine layout and (mostly) the length class.
    Variant("Strato S1", "Strato", engines="wing_pods2", length=0.85, window_rows=1),
    Variant("Strato S2", "Strato", engines="wing_pods4", length=1.3, window_rows=2, winglets=True),
    Variant("Strato S4", "Strato", engines="tail_pods2", length=1.1, window_rows=1),
    Variant("Strato S3", "Strato", engines="wing_pods4", length=0.85, window_rows=1, ood=True),
    Variant("Skyvan 10", "Skyvan", engines="wing_props2", length=0.8, window_rows=1),
    Variant("Skyvan 20", "Skyvan", engines="wing_props4", length=1.15, window_rows=1),
    Variant("Polar P1", "Polar", engines="tail_pods2", length=0.85, window_rows=1),
    Variant("Polar P2", "Polar", engines="wing_pods4", length=1.25, window_rows=2),
    Variant("Polar P3", "Polar", engines="wing_pods2", length=1.0, window_rows=1, ood=True),
    Variant("Tundra T1", "Tundra", engines="wing_props2", length=1.0, window_rows=0),
    Variant("Tundra T2", "Tundra", engines="nose_prop", length=0.7, window_rows=1),
    Variant("Meadow M1", "Meadow", engines="nose_prop", length=0.7, window_rows=0),
    Variant("Meadow M2", "Meadow", engines="wing_props2", length=0.95, window_rows=1),
    Variant("Meadow M3", "Meadow", engines="wing_props4", length=1.2, window_rows=1, winglets=True),
    Variant("Nimbus N1", "Nimbus", engines="wing_pods2", length=0.9, window_rows=1),
    Variant("Nimbus N4", "Nimbus", engines="wing_pods4", length=1.25, window_rows=1),
    Variant("Arrow A1", "Arrow", engines="none", length=0.9, window_rows=0),
    Variant("Arrow A2", "Arrow", engines="wing_pods2", length=1.25, window_rows=0),
    Variant("Arrow A3", "Arrow", engines="tail_pods2", length=1.1, window_rows=1, ood=True),
    Variant("Comet C1", "Comet", engines="tail_pods2", length=1.0, window_rows=0),
    Variant("Comet C2", "Comet", engines="nose_prop", length=0.7, window_rows=0),
    Variant("Zenith Z1", "Zenith", engines="wing_pods2", length=1.0, window_rows=0),
    Variant("Zenith Z2", "Zenith", engines="wing_props4", length=1.2, window_rows=1),
    Variant("Horizon H1", "Horizon", engines="wing_pods2", length=1.0, window_rows=2),
    Variant("Horizon H2", "Horizon", engines="wing_pods4", length=1.35, window_rows=2, winglets=True),
    Variant("Horizon H3", "Horizon", engines="tail_pods2", length=1.1, window_rows=1, ood=True),
]

MANUFACTURER: dict[str, Manufacturer] = {m.name: m for m in MANUFACTURERS}
FAMILY: dict[str, Family] = {f.name: f for f in FAMILIES}
VARIANT: dict[str, Variant] = {v.name: v for v in VARIANTS}


def class_names() -> list[str]:
    """In-distribution variant names in label order."""
    return [v.name for v in VARIANTS if not v.ood]


def ood_variants() -> list[str]:
    """Variants withheld from train/val (the ``ood`` split)."""
    return [v.name for v in VARIANTS if v.ood]


def hierarchy() -> Hierarchy:
    """variant -> family -> manufacturer, over every variant (ood included)."""
    return Hierarchy(
        levels=["variant", "family", "manufacturer"],
        parents={
            "variant": {v.name: v.family for v in VARIANTS},
            "family": {f.name: f.manufacturer for f in FAMILIES},
        },
    )


def part_choices(name: str) -> dict[str, object]:
    """Every part choice of a variant, flat (what the manifest records per image)."""
    v = VARIANT[name]
    f = FAMILY[v.family]
    m = MANUFACTURER[f.manufacturer]
    return {
        "variant": v.name,
        "family": f.name,
        "manufacturer": m.name,
        "planform": f.planform,
        "wing_mount": f.wing_mount,
        "tail": f.tail,
        "engines": v.engines,
        "nose": m.nose,
        "length": v.length,
        "girth": f.girth,
        "window_rows": v.window_rows,
        "winglets": v.winglets,
    }
