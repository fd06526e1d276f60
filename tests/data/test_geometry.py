"""geometry: tight pixel-inclusive bbox and inscribed-circle points from a mask; ignore pixels are not target."""

from __future__ import annotations

import numpy as np
import pytest

from wise_rl.data.geometry import inscribed_circle_points, mask_bbox, target_pixels
from wise_rl.data.schema import IGNORE_INDEX


def inside(mask: np.ndarray, point) -> bool:
    x, y = point
    assert float(x).is_integer() and float(y).is_integer()
    return bool(target_pixels(mask)[int(y), int(x)])


def test_mask_bbox_is_tight_and_pixel_inclusive():
    mask = np.zeros((12, 16), dtype=np.uint8)
    mask[3, 5] = 1
    mask[7, 11] = 1
    mask[5, 8] = 1
    assert mask_bbox(mask) == [5.0, 3.0, 11.0, 7.0]
    single = np.zeros((4, 4), dtype=np.uint8)
    single[2, 1] = 1
    assert mask_bbox(single) == [1.0, 2.0, 1.0, 2.0]  # one pixel: x1 == x2, area (x2-x1+1)(y2-y1+1) = 1


def test_ignore_pixels_are_not_target():
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:10, 5:10] = 1
    mask[0:20, 15:20] = IGNORE_INDEX  # a large ignore strip must not widen the box or attract the points
    assert mask_bbox(mask) == [5.0, 5.0, 9.0, 9.0]
    assert target_pixels(mask).sum() == 25
    for point in inscribed_circle_points(mask):
        assert inside(mask, point)


def test_l_shape_points_inside_and_apart():
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[0:40, 0:10] = 1   # vertical arm
    mask[30:40, 0:40] = 1  # horizontal arm
    (x1, y1), (x2, y2) = inscribed_circle_points(mask)
    assert inside(mask, (x1, y1)) and inside(mask, (x2, y2))
    # The largest circle sits in the junction (the thickest part); the second lies outside the first circle
    # (radius 5 = half the arm width), i.e. in one of the arms.
    assert 0 <= x1 < 10 and 30 <= y1 < 40
    assert np.hypot(x1 - x2, y1 - y2) > 5
    assert not (0 <= x2 < 10 and 30 <= y2 < 40)


def test_two_blobs_get_one_point_each():
    mask = np.zeros((30, 60), dtype=np.uint8)
    mask[5:25, 2:22] = 1    # big blob (20×20)
    mask[10:20, 40:50] = 1  # small blob (10×10)
    (x1, y1), (x2, y2) = inscribed_circle_points(mask)
    assert 2 <= x1 < 22 and 5 <= y1 < 25, "first point is in the larger blob"
    assert 40 <= x2 < 50 and 10 <= y2 < 20, "second point is in the other blob"


def test_tiny_region_repeats_the_point():
    mask = np.zeros((5, 5), dtype=np.uint8)
    mask[2, 3] = 1
    assert inscribed_circle_points(mask) == [[3.0, 2.0], [3.0, 2.0]]


@pytest.mark.parametrize("fill", [0, IGNORE_INDEX])
def test_empty_mask_raises(fill):
    mask = np.full((6, 6), fill, dtype=np.uint8)
    with pytest.raises(ValueError, match="empty mask"):
        mask_bbox(mask)
    with pytest.raises(ValueError, match="empty mask"):
        inscribed_circle_points(mask)


def test_cropped_inscribed_points_equal_the_full_image_computation():
    from wise_rl.data.geometry import _inscribed_points

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(30):
        mask = np.zeros((60, 80), dtype=np.uint8)
        for _ in range(3):
            x, y = rng.integers(0, 70), rng.integers(0, 50)
            mask[y : y + rng.integers(2, 15), x : x + rng.integers(2, 15)] = 1
        mask[rng.integers(0, 60, 30), rng.integers(0, 80, 30)] = 255
        if not target_pixels(mask).any():
            continue
        assert inscribed_circle_points(mask) == _inscribed_points(target_pixels(mask))
        checked += 1
    assert checked > 20
