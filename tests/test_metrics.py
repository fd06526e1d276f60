"""wise_rl.metrics on hand-computed masks: ignore pixels, empty masks, failures, protocols, frames."""

from __future__ import annotations

import numpy as np
import pytest

from wise_rl import frames, metrics
from wise_rl.masks import rasterize_bbox


def _mask(h, w, *boxes, value=1, base=None):
    m = np.zeros((h, w), dtype=np.uint8) if base is None else base.copy()
    for y1, y2, x1, x2 in boxes:
        m[y1:y2, x1:x2] = value
    return m


def test_sample_iou_hand_computed():
    gt = _mask(10, 10, (0, 4, 0, 4))  # 16 target pixels
    pred = _mask(10, 10, (2, 6, 2, 6))  # 16 predicted pixels, overlap 2×2 = 4
    assert metrics.sample_iou(pred, gt) == (4, 28, pytest.approx(4 / 28))


def test_ignore_pixels_excluded_from_both():
    gt = _mask(10, 10, (0, 4, 0, 4))
    gt = _mask(10, 10, (0, 4, 4, 8), value=255, base=gt)  # a 4×4 ignore region right of the target
    pred = _mask(10, 10, (0, 4, 0, 8))  # target + all ignore pixels: 32 predicted pixels
    rec = metrics.score_mask(pred, gt)
    assert (rec["intersection"], rec["union"], rec["iou"]) == (16, 16, 1.0)
    assert rec["n_ignore"] == 16 and rec["ignore_hits"] == 16 and rec["pred_pixels"] == 16
    # predicting inside the ignore region only: I = 0, U = |T|
    assert metrics.sample_iou(_mask(10, 10, (0, 4, 4, 8)), gt) == (0, 16, 0.0)


def test_empty_target_and_prediction_is_one_but_failure_is_zero():
    empty = np.zeros((5, 5), dtype=np.uint8)
    assert metrics.sample_iou(empty, empty) == (0, 0, 1.0)
    assert metrics.sample_iou(_mask(5, 5, (0, 1, 0, 1)), empty) == (0, 1, 0.0)
    # a failed parse: no prediction → I = 0, U = |T|, IoU 0, even for an empty target
    gt = _mask(5, 5, (0, 2, 0, 3))
    assert metrics.sample_iou(None, gt) == (0, 6, 0.0)
    assert metrics.sample_iou(None, empty) == (0, 0, 0.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same .original. frame"):
        metrics.sample_iou(np.zeros((4, 5)), np.zeros((5, 4)))


def _rec(rid, pred, gt, failure=None, **extra):
    return {"id": rid, **metrics.score_mask(None if failure else pred, gt), "failure": failure,
            "format_ok": failure is None, **extra}


def test_aggregate_lisa_giou_ciou_acc50():
    gt = _mask(10, 10, (0, 4, 0, 4))
    empty = np.zeros((10, 10), dtype=np.uint8)
    records = [
        _rec("a", _mask(10, 10, (2, 6, 2, 6)), gt),  # 4/28
        _rec("b", gt, gt),  # 16/16
        _rec("c", empty, empty),  # empty union → 1
        _rec("d", None, gt, failure="missing_answer"),  # 0/16
    ]
    m = metrics.aggregate(records, "lisa")
    assert m["n"] == 4 and m["n_scored"] == 4 and m["n_failed"] == 1
    assert m["failures"] == {"missing_answer": 1}
    assert m["gIoU"] == pytest.approx((4 / 28 + 1 + 1 + 0) / 4)
    assert m["cIoU"] == pytest.approx((4 + 16 + 0 + 0) / (28 + 16 + 0 + 16))
    assert m["acc50"] == pytest.approx(2 / 4)
    assert m["format_valid"] == pytest.approx(3 / 4)
    assert m["n_empty_union"] == 1 and m["n_dropped_empty_union"] == 0


def test_aggregate_seg_zero_drops_empty_union_counts_it_and_counts_ignore_as_target():
    gt = _mask(10, 10, (0, 4, 0, 4))
    gt_ign = _mask(10, 10, (0, 4, 4, 6), value=255, base=gt)  # 8 ignore pixels
    empty = np.zeros((10, 10), dtype=np.uint8)
    records = [
        _rec("a", gt, gt_ign),  # lisa 16/16; seg-zero: I = 16, U = 16 + 8 → 16/24
        _rec("b", empty, empty),  # lisa 1; seg-zero: dropped
        _rec("c", None, gt_ign, failure="answer_not_json"),  # lisa 0/16; seg-zero 0/24
    ]
    lisa = metrics.aggregate(records, "lisa")
    sz = metrics.aggregate(records, "seg-zero")
    assert lisa["gIoU"] == pytest.approx((1 + 1 + 0) / 3)
    assert lisa["cIoU"] == pytest.approx(16 / 32)
    assert sz["n"] == 3 and sz["n_scored"] == 2 and sz["n_dropped_empty_union"] == 1
    assert sz["gIoU"] == pytest.approx((16 / 24 + 0) / 2)
    assert sz["cIoU"] == pytest.approx(16 / 48)
    assert sz["protocol"] == "seg-zero"
    with pytest.raises(ValueError, match="unknown metric protocol"):
        metrics.aggregate(records, "coco")


def test_missing_and_unknown_ids_are_failures_never_dropped():
    gt = _mask(6, 6, (0, 3, 0, 3))
    records = [_rec("a", gt, gt), {"id": "zzz", "intersection": 0, "union": 0, "iou": 0.0,
                                   "failure": metrics.UNKNOWN_ID}]
    m = metrics.aggregate(records, "lisa", expected_ids=["a", "b"])
    assert m["n"] == 2  # the dataset's samples: a and the missing b (zzz is not a sample)
    assert m["failures"] == {metrics.MISSING_PREDICTION: 1} and m["n_unknown_ids"] == 1
    assert m["n_failed"] == 1 <= m["n"]
    assert m["gIoU"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="duplicate record"):
        metrics.aggregate([_rec("a", gt, gt), _rec("a", gt, gt)])


def test_cost_figures():
    recs = [{"think_tokens": 2, "completion_tokens": 10, "latency_s": 0.5},
            {"think_tokens": 4, "completion_tokens": 20, "latency_s": 0.5},
            {"think_tokens": 9, "completion_tokens": 30, "latency_s": 0.5}]
    c = metrics.cost_figures(recs)
    assert c["think_tokens_mean"] == pytest.approx(5.0)
    assert c["think_tokens_median"] == 4.0
    assert c["completion_tokens_mean"] == 20.0
    assert c["latency_mean_s"] == 0.5 and c["samples_per_s"] == 2.0
    assert metrics.cost_figures([{}])["think_tokens_mean"] is None


def test_frame_rescaling_box_from_model_frame_to_original():
    # A 200×100 original; the model answers in an 840 frame. Box [84, 168, 419, 671] in the model frame is
    # [20, 20, 99.76, 79.88] → rounded pixel-inclusive columns 20..100, rows 20..80 of the original.
    answer = {"bbox": [84, 168, 419, 671], "points_1": [210, 420], "points_2": [210, 420]}
    orig = frames.answer_to_original(answer, (200, 100), 840)
    pred = rasterize_bbox(orig["bbox"], (200, 100))
    gt = _mask(100, 200, (20, 81, 20, 101))
    assert metrics.sample_iou(pred, gt) == (81 * 61, 81 * 61, 1.0)
    # not rescaling (scoring model-frame coordinates on the original) is caught by a low IoU
    wrong = rasterize_bbox(answer["bbox"], (200, 100))
    assert metrics.sample_iou(wrong, gt)[2] < 0.2
