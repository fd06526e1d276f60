"""frames: original ↔ model frame round trips for boxes, points and masks; bad sizes raise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from wise_rl import frames

sizes = st.integers(min_value=8, max_value=4000)
model_sizes = st.sampled_from([112, 420, 448, 840, 1024])


@st.composite
def box_in_image(draw):
    width, height = draw(sizes), draw(sizes)
    x1 = draw(st.integers(0, width - 1))
    x2 = draw(st.integers(x1, width - 1))
    y1 = draw(st.integers(0, height - 1))
    y2 = draw(st.integers(y1, height - 1))
    return (width, height), [x1, y1, x2, y2]


@settings(max_examples=200, deadline=None)
@given(box_in_image(), model_sizes)
def test_bbox_original_model_original_within_one_pixel(case, model_size):
    size, bbox = case
    model = frames.bbox_to_model(bbox, size, model_size)
    assert all(0 <= v <= model_size for v in model)
    np.testing.assert_allclose(frames.bbox_to_original(model, size, model_size), bbox, atol=1e-6)
    # The model answers in integer pixels: rounding in the model frame costs at most half a model pixel,
    # i.e. 0.5 * W / S original pixels — within 1 px whenever the original is at most twice the model frame.
    rounded = [round(v) for v in model]
    back = frames.bbox_to_original(rounded, size, model_size)
    scale = max(size[0], size[1]) / model_size
    assert np.max(np.abs(np.subtract(back, bbox))) <= 0.5 * scale + 1e-9
    if scale <= 2:
        assert np.max(np.abs(np.subtract(back, bbox))) <= 1


@settings(max_examples=200, deadline=None)
@given(sizes, sizes, model_sizes, st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=4))
def test_points_round_trip(width, height, model_size, fractions):
    points = [[fx * (width - 1), fy * (height - 1)] for fx, fy in fractions]
    model = frames.points_to_model(points, (width, height), model_size)
    back = frames.points_to_original(model, (width, height), model_size)
    np.testing.assert_allclose(back, points, atol=1e-6)
    answer = {"bbox": [0, 0, model_size, model_size], "points_1": model[0], "points_2": model[-1]}
    orig = frames.answer_to_original(answer, (width, height), model_size)
    np.testing.assert_allclose(orig["bbox"], [0, 0, width, height], atol=1e-6)
    np.testing.assert_allclose([orig["points_1"], orig["points_2"]], [points[0], points[-1]], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(4, 24), st.integers(0, 2**31 - 1))
def test_blocky_mask_round_trips(fx, fy, model_size, seed):
    """A mask constant on fx×fy blocks survives original → model → original exactly (nearest neighbour)."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(model_size, model_size))
    original = np.kron(cells, np.ones((fy, fx), dtype=np.uint8))  # H = fy·S, W = fx·S
    size = (fx * model_size, fy * model_size)
    model = frames.mask_to_model(original, model_size)
    np.testing.assert_array_equal(model, cells)
    np.testing.assert_array_equal(frames.mask_to_original(model, size), original)


def test_mask_values_are_kept_by_nearest_resizing():
    mask = np.zeros((30, 50), dtype=np.uint8)
    mask[5:20, 10:40] = 1
    mask[0:5, 0:5] = 255
    model = frames.mask_to_model(mask, 100)
    assert model.shape == (100, 100) and set(np.unique(model)) == {0, 1, 255}


def test_image_to_model_is_square_rgb():
    image = Image.new("L", (30, 20), 7)
    out = frames.image_to_model(image, 64)
    assert out.size == (64, 64) and out.mode == "RGB"


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-5, 10)])
def test_non_positive_image_size_raises(size):
    with pytest.raises(ValueError, match="positive"):
        frames.bbox_to_model([0, 0, 1, 1], size, 840)
    with pytest.raises(ValueError, match="positive"):
        frames.points_to_original([[0, 0]], size, 840)


@pytest.mark.parametrize("model_size", [0, -840])
def test_non_positive_model_size_raises(model_size):
    with pytest.raises(ValueError, match="model_size"):
        frames.bbox_to_original([0, 0, 1, 1], (100, 100), model_size)
