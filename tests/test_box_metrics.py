"""The box, point and per-sample metrics of wise_rl.metrics on hand-computed values; every user scores with them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wise_rl import metrics


def test_box_iou_pixel_inclusive_strict_overlap():
    assert metrics.box_iou([0, 0, 9, 9], [5, 5, 14, 14]) == pytest.approx(25 / 175)  # 5×5 of 100 + 100 − 25
    assert metrics.box_iou([0, 0, 9, 9], [0, 0, 9, 9]) == 1.0
    assert metrics.box_iou([0, 0, 9, 9], [9, 0, 20, 9]) == 0.0  # one shared column: ix1 == ix2, not strict
    assert metrics.box_iou([5, 5, 0, 0], [0, 0, 9, 9]) == 0.0  # inverted prediction: no overlap, area ≥ 0 clipped
    assert metrics.box_iou([0, 0, 1e308, 1e308], [0, 0, 9, 9]) == 0.0  # overflowing union scores 0, not nan


def test_box_l1_and_points():
    assert metrics.box_l1([0, 0, 10, 10], [2, 4, 10, 16]) == pytest.approx((2 + 4 + 0 + 6) / 4)
    # order-free: the swapped pairing wins when it is closer
    assert metrics.points_distance([[0, 0], [10, 0]], [[10, 0], [0, 3]]) == pytest.approx(1.5)
    answer = {"bbox": [0, 0, 50, 50], "points_1": [10, 10], "points_2": [40.9, 40]}
    assert metrics.points_hit(answer, [[40, 40], [10, 10]])
    assert not metrics.points_hit(answer, [[40, 40], [10, 10]], threshold=0.0)
    outside = {"bbox": [0, 0, 20, 20], "points_1": [10, 10], "points_2": [30, 10]}  # a point outside its own box
    assert not metrics.points_hit(outside, [[10, 10], [30, 10]])


def test_mask_iou_is_the_lisa_sample_iou():
    gt = np.zeros((10, 10), np.uint8)
    gt[0:4, 0:4] = 1
    gt[0:4, 4:6] = 255  # ignore pixels count for neither side
    pred = np.zeros((10, 10), np.uint8)
    pred[0:4, 0:6] = 1
    assert metrics.mask_iou(pred, gt) == 1.0
    assert metrics.mask_iou(None, gt) == 0.0
    assert metrics.mask_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # empty union
    with pytest.raises(ValueError, match="shape"):
        metrics.mask_iou(np.zeros((5, 5), np.uint8), gt)


def test_box_scores_counts_failures_as_zero():
    answers = [{"bbox": [0, 0, 9, 9]}, {"bbox": [5, 5, 14, 14]}, None, {"points_1": [1, 1]}]
    gts = [[0, 0, 9, 9]] * 4
    s = metrics.box_scores(answers, gts)
    assert s["n"] == 4
    assert s["box_acc50"] == 0.25
    assert s["box_mean_iou"] == pytest.approx((1 + 25 / 175) / 4)
    assert metrics.box_scores([], []) == {"box_acc50": 0.0, "box_mean_iou": 0.0, "n": 0}
    with pytest.raises(ValueError, match="2 answers for 1"):
        metrics.box_scores([None, None], [[0, 0, 1, 1]])


def test_one_definition_serves_rewards_and_the_testbed():
    """The rewards, the gate and the ShapeWorld baselines call the metrics module's functions themselves."""
    import rewards._gate
    import rewards.geometry
    from wise_rl.testbed import shapeworld

    assert rewards.geometry.box_iou is metrics.box_iou and rewards.geometry.points_hit is metrics.points_hit
    assert rewards._gate.box_iou is metrics.box_iou and rewards._gate.mask_iou is metrics.mask_iou
    assert shapeworld.box_iou is metrics.box_iou
    assert math.isclose(metrics.box_iou([0, 0, 9, 9], [5, 5, 14, 14]), 25 / 175)
