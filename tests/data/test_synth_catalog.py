"""The aircraft catalog: a 3-level tree, withheld variants, classes told apart by their parts."""

from __future__ import annotations

from itertools import combinations

from visae.data.synth import catalog


def test_tree_covers_every_variant_with_three_levels():
    h = catalog.hierarchy()
    assert h.levels == ["variant", "family", "manufacturer"]
    names = [v.name for v in catalog.VARIANTS]
    assert len(names) == len(set(names)) >= 20
    assert set(h.parents["variant"]) == set(names)
    for v in names:
        assert h.ancestor(v, "manufacturer") in catalog.MANUFACTURER
    assert len(set(h.parents["variant"].values())) >= 6 and len(set(h.parents["family"].values())) >= 4


def test_ood_variants_are_new_combinations_of_known_families():
    ood, ids = catalog.ood_variants(), catalog.class_names()
    assert 3 <= len(ood) <= 5 and not set(ood) & set(ids)
    assert sorted(ood + ids) == sorted(v.name for v in catalog.VARIANTS)
    id_families = {catalog.VARIANT[v].family for v in ids}
    for v in ood:
        assert catalog.VARIANT[v].family in id_families


def _parts(v: str) -> dict:
    return {k: x for k, x in catalog.part_choices(v).items() if k not in ("variant", "family", "manufacturer")}


def test_every_two_variants_differ_in_their_parts():
    names = [v.name for v in catalog.VARIANTS]
    for a, b in combinations(names, 2):
        assert _parts(a) != _parts(b), (a, b)


def test_variants_of_a_family_share_most_parts_and_differ_in_few():
    for fam in catalog.FAMILIES:
        members = [v.name for v in catalog.VARIANTS if v.family == fam.name]
        assert len(members) >= 2
        for a, b in combinations(members, 2):
            pa, pb = _parts(a), _parts(b)
            same = {k for k in pa if pa[k] == pb[k]}
            assert {"planform", "wing_mount", "tail", "nose", "girth"} <= same
            assert 1 <= len(pa) - len(same) <= 4


def test_part_names_start_with_background_and_name_every_drawn_part():
    from visae.data.synth.geometry import variant_geometry

    assert catalog.PART_NAMES[0] == "background"
    drawn = {p.part for v in catalog.VARIANTS for p in variant_geometry(v.name).prims}
    assert drawn == set(range(1, len(catalog.PART_NAMES)))
