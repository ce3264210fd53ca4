"""The rasteriser: shapes, determinism, depth order, mirror symmetry, visibility under any pose."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from visae.data.synth.catalog import PART_ID, VARIANTS
from visae.data.synth.factors import sample_factors
from visae.data.synth.geometry import WINGS, variant_geometry
from visae.data.synth.render import SUPERSAMPLE, pose_matrix, render_chunk, render_one

SIZE = 48


def _plain(variant: str, **pose) -> dict:
    """Factors of ``variant`` with a fixed pose, no distractors, no jitter."""
    f = sample_factors(np.random.default_rng(0), variant)
    f.update(heading=0.0, elevation=90.0, bank=0.0, pitch=0.0, angle=0.0, flip=False, scale=0.8, center_x=0.5,
             center_y=0.5, proportions=[1.0, 1.0, 1.0], gear_down=False, distractors=[])
    f.update(pose)
    return f


def _pixel(f: dict, point_xyz, size: int = SIZE) -> tuple[int, int]:
    """Output pixel (row, col) of a body-frame point, with the renderer's conventions."""
    geom = variant_geometry(f["variant"])
    px = f["scale"] * size * SUPERSAMPLE / geom.extent
    x, y, _ = pose_matrix(f) @ np.asarray(point_xyz)
    cx = (x * px + f["center_x"] * size * SUPERSAMPLE) / SUPERSAMPLE
    cy = (y * px + f["center_y"] * size * SUPERSAMPLE) / SUPERSAMPLE
    return int(np.floor(cy)), int(np.floor(cx))  # PIL's pixel i spans [i, i + 1)


def _bg() -> np.ndarray:
    return np.full((SIZE, SIZE, 3), 128, np.uint8)


def test_chunk_shapes_dtypes_and_same_generator_same_bytes():
    names = [v.name for v in VARIANTS][:6]
    fs = [sample_factors(np.random.default_rng(1), n) for n in names]
    a_img, a_parts = render_chunk(np.random.default_rng(5), fs, 40)
    b_img, b_parts = render_chunk(np.random.default_rng(5), fs, 40)
    assert a_img.shape == (6, 40, 40, 3) and a_img.dtype == np.uint8
    assert a_parts.shape == (6, 40, 40) and a_parts.dtype == np.uint8
    assert a_img.tobytes() == b_img.tobytes() and a_parts.tobytes() == b_parts.tobytes()
    assert a_parts.max() < len(PART_ID)


def test_depth_order_high_wing_hides_the_fuselage_from_above_only():
    """Seen from above a high wing covers the fuselage; from below the fuselage covers it."""
    wing = WINGS["straight"]
    for variant, mount in (("Skyvan 10", "high"), ("Meadow M1", "low")):
        v = next(v for v in VARIANTS if v.name == variant)
        root = (wing["x"] * v.length - wing["cr"] / 2, 0.0, 0.0)
        seen = {}
        for elevation in (90.0, -90.0):
            f = _plain(variant, elevation=elevation)
            _, parts = render_one(_bg(), f, SIZE)
            pid = int(parts[_pixel(f, root)])
            seen[elevation] = "fuselage" if pid in (PART_ID["fuselage"], PART_ID["stripe"]) else pid  # skin or paint
        wing_on_top = PART_ID["wing"], "fuselage"
        assert (seen[90.0], seen[-90.0]) == (wing_on_top if mount == "high" else wing_on_top[::-1])


def test_flip_mirrors_the_part_map():
    f = _plain("Strato S4", heading=33.0, elevation=55.0, bank=10.0)
    _, parts = render_one(_bg(), f, SIZE)
    _, flipped = render_one(_bg(), dict(f, flip=True), SIZE)
    mirrored = parts[:, ::-1]
    for pid in (PART_ID["fuselage"], PART_ID["wing"], PART_ID["engine"]):
        a, b = mirrored == pid, flipped == pid
        assert (a & b).sum() / (a | b).sum() > 0.85


def test_bigger_scale_covers_more_pixels():
    small = render_one(_bg(), _plain("Horizon H1", scale=0.5), SIZE)[1]
    big = render_one(_bg(), _plain("Horizon H1", scale=0.9), SIZE)[1]
    ratio = (big > 0).sum() / (small > 0).sum()
    assert 2.2 < ratio < 4.5  # area grows like scale squared (0.9 / 0.5)^2 = 3.24


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(0, len(VARIANTS) - 1),
    heading=st.floats(0, 360),
    elevation=st.one_of(st.floats(30, 90), st.floats(-90, -30)),
    bank=st.floats(-25, 25),
    angle=st.floats(-30, 30),
    flip=st.booleans(),
)
def test_any_pose_shows_the_aircraft_inside_the_frame(k, heading, elevation, bank, angle, flip):
    f = _plain(VARIANTS[k].name, heading=heading, elevation=elevation, bank=bank, angle=angle, flip=flip)
    image, parts = render_one(_bg(), f, SIZE)
    ids = set(np.unique(parts).tolist())
    assert {PART_ID["fuselage"], PART_ID["wing"]} <= ids
    if elevation > 0:  # from below, a low fin can hide behind the fuselage and wings
        assert PART_ID["tail"] in ids
    assert (parts > 0).sum() > 0.04 * SIZE * SIZE
    # The drawn aircraft changes the RGB exactly around where the part map says it is.
    changed = np.abs(image.astype(int) - 128).sum(-1) > 0
    assert changed[parts > 0].mean() > 0.9
    assert changed.sum() < 2 * (parts > 0).sum() + 4 * SIZE
