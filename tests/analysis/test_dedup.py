"""Near-duplicate images: crops, resizes and re-encodings of one picture are found, different
pictures and flat images are not, and a list keeps the best entry of each photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from visae.analysis.dedup import Neighbours, collapse, near_duplicates, similar_pairs, thumbnail


def picture(seed: int, size: int = 256) -> Image.Image:
    """A textured picture: smooth random colour fields at two scales, like a photo's structure."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    fine = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    return Image.blend(coarse, fine, 0.5)


def view(im: Image.Image, size: int = 64) -> np.ndarray:
    """What a square backbone sees: the picture resized to its input."""
    return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))


def jpeg(im: Image.Image, quality: int = 60) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return Image.open(buf)


@pytest.fixture(scope="module")
def versions() -> list[np.ndarray]:
    """0: a picture; 1: its top-left 80% crop; 2: a crop of 75% at an off-grid offset, resized;
    3: the picture re-encoded as JPEG and brighter; 4, 5: two other pictures; 6, 7: flat grey images."""
    a = picture(0)
    crop = a.crop((0, 0, 205, 205))
    off = a.crop((33, 18, 225, 210)).resize((150, 150), Image.BICUBIC)
    bright = Image.fromarray(np.clip(np.asarray(jpeg(a)).astype(int) + 25, 0, 255).astype(np.uint8))
    flat = Image.new("RGB", (256, 256), (120, 120, 120))
    flat2 = Image.new("RGB", (256, 256), (121, 119, 120))
    return [view(x) for x in (a, crop, off, bright, picture(1), picture(2), flat, flat2)]


def test_versions_of_one_picture_are_near_duplicates_and_nothing_else(versions):
    thumbs = np.stack([thumbnail(v) for v in versions])
    a, b = similar_pairs(thumbs, [np.arange(len(versions))])
    pairs = {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist())}
    assert {(0, 1), (0, 2), (0, 3)} <= pairs  # a crop, an off-grid resized crop, a re-encoded brighter copy
    assert all(max(p) <= 3 for p in pairs), f"other pictures or flat images matched: {pairs}"


def test_near_duplicates_reads_each_image_once_and_skips_unreadable_ones(versions):
    seen: list[int] = []

    def read(i: int) -> np.ndarray | None:
        seen.append(i)
        return None if i == 5 else versions[i]

    near = near_duplicates([np.array([0, 1, 4]), np.array([1, 2, 5, 0])], read)
    assert sorted(seen) == [0, 1, 2, 4, 5] and near.n_images == 4 and near.unreadable == 1
    assert near.around(0) == {0, 1, 2} and near.around(4) == {4}


def test_a_list_keeps_the_best_entry_of_each_photo():
    near = Neighbours()
    near.add(10, 11)  # 11 is a crop of 10
    near.add(10, 12)  # 12 is another crop of 10: 11 and 12 meet in 10
    near.add(20, 21)
    near.add(21, 22)
    near.add(22, 23)  # a chain 20 - 21 - 22 - 23: 23 is three steps from 20
    image_SK = np.array([[11, 12, 30, 10, 31, 32],
                         [20, 23, 22, 33, 34, 35]])
    valid_SK = np.ones_like(image_SK, dtype=bool)
    keep, group, dups, dropped = collapse(image_SK, valid_SK, 3, near)
    assert keep[0].tolist() == [0, 2, 4] and dups[0].tolist() == [2, 0, 0] and dropped[0] == 2  # 12 and 10 join 11
    assert keep[1].tolist() == [0, 1, 3]  # 23 is no near-duplicate of 20, nor do they share one: kept
    assert dups[1].tolist() == [1, 0, 0]  # 22 shares 21 with 20: dropped, counted for 20 (the first kept)
    # top patches: at most per_group entries of one photo; the group says which entries are one photo
    keep, group, _, _ = collapse(np.array([[10, 11, 12, 40, 10]]), np.ones((1, 5), bool), 4, near, per_group=2)
    assert keep[0].tolist() == [0, 1, 3, -1] and group[0].tolist()[:3] == [0, 0, 2]
    # without near-duplicates only the same image counts twice
    keep, _, _, dropped = collapse(np.array([[5, 5, 6]]), np.ones((1, 3), bool), 3, None)
    assert keep[0].tolist() == [0, 2, -1] and dropped[0] == 1
