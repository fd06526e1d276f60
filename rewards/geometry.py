"""Box and point rewards in the model frame: ``bbox_iou``, ``bbox_l1``, ``points`` (the official definitions).

Boxes are pixel-inclusive ``[x1, y1, x2, y2]``.

- ``bbox_iou`` (continuous)::

      ix1, iy1 = max(px1, gx1), max(py1, gy1);  ix2, iy2 = min(px2, gx2), min(py2, gy2)
      inter = (ix2 − ix1 + 1)(iy2 − iy1 + 1)   if ix1 < ix2 and iy1 < iy2 (strict)   else 0
      area  = (x2 − x1 + 1)(y2 − y1 + 1);  IoU = inter / (area_p + area_g − inter)

  Option ``threshold``: Seg-Zero's binary reward ``1 if IoU > threshold else 0``. A non-positive or non-finite
  union scores 0; the value is clipped to [0, 1].
- ``bbox_l1``: ``1 if mean(|p_i − g_i|, i = 1..4) < threshold`` (default 10 px of an 840 image) else 0.
- ``points``: ``1 if`` both predicted points, cast to int, lie in the predicted bbox (inclusive) ``and``
  ``min over the two pairings of (d(p1, ga) + d(p2, gb)) / 2 < threshold`` (Euclidean, default 100 px) ``else 0``.

Both thresholds are in pixels of an 840×840 image, as in the official code; each row compares in its own frame
(``frame``, else ``abs{model_size}``) with the threshold scaled to it (``rewards._base.frame_thresholds``: 11.9 and
119 in ``rel1000``; rows without either keep the value). IoU does not depend on the frame.

The formulas are defined once in :mod:`wise_rl.metrics` (``box_iou``, ``box_l1``, ``points_hit``).
All three read the answer regardless of the format reward (as the official code does): no valid answer → 0, no
ground truth → None, template echo → 0.

>>> box_iou([0, 0, 9, 9], [5, 5, 14, 14]) == 25 / 175
True
>>> box_iou([0, 0, 5, 5], [5, 5, 10, 10])  # touching corners: ix1 == ix2, no strict overlap
0.0
>>> points_hit({"bbox": [0, 0, 50, 50], "points_1": [10, 10], "points_2": [40.9, 40]}, [[40, 40], [10, 10]])
True
"""

from __future__ import annotations

from rewards import register_reward
from rewards._base import Columns, Reward, as_box, as_points, frame_thresholds
from wise_rl.metrics import box_iou, box_l1, points_hit


@register_reward("bbox_iou")
class BboxIoUReward(Reward):
    """Continuous pixel-inclusive bbox IoU, or ``1 if IoU > threshold`` when ``threshold`` is given (Seg-Zero)."""

    name = "bbox_iou"
    ground_truth = ("gt_bbox",)

    def __init__(self, threshold: float | None = None):
        super().__init__()
        self.threshold = None if threshold is None else float(threshold)

    def score(self, parsed, columns: Columns, log_metric=None):
        out: list[float | None] = []
        for i, (p, gt) in enumerate(zip(parsed, columns.get("gt_bbox"))):
            box = as_box(gt, self.name, i)
            if box is None:
                out.append(None)
                continue
            iou = 0.0 if p.answer is None else box_iou(p.answer["bbox"], box)
            out.append(iou if self.threshold is None else float(iou > self.threshold))
        return out


@register_reward("bbox_l1")
class BboxL1Reward(Reward):
    """``1 if mean |Δ| of the 4 bbox coordinates < threshold else 0`` (840-px units, default 10; per row's frame).

    The threshold is in pixels of an 840×840 image, as the official code writes it, and is scaled to each row's frame
    (:func:`wise_rl.frames.scale_threshold`)."""

    name = "bbox_l1"
    ground_truth = ("gt_bbox",)

    def __init__(self, threshold: float = 10.0):
        super().__init__()
        self.threshold = float(threshold)

    def score(self, parsed, columns: Columns, log_metric=None):
        out: list[float | None] = []
        limits = frame_thresholds(self.threshold, columns)
        for i, (p, gt) in enumerate(zip(parsed, columns.get("gt_bbox"))):
            box = as_box(gt, self.name, i)
            if box is None:
                out.append(None)
            else:
                out.append(float(p.answer is not None and box_l1(p.answer["bbox"], box) < limits[i]))
        return out


@register_reward("points")
class PointsReward(Reward):
    """``1 if`` both int-cast points lie in the predicted bbox and the order-free mean distance < ``threshold``."""

    name = "points"
    ground_truth = ("gt_points",)

    def __init__(self, threshold: float = 100.0):
        super().__init__()
        self.threshold = float(threshold)

    def score(self, parsed, columns: Columns, log_metric=None):
        out: list[float | None] = []
        limits = frame_thresholds(self.threshold, columns)
        for i, (p, gt) in enumerate(zip(parsed, columns.get("gt_points"))):
            points = as_points(gt, self.name, i)
            if points is None:
                out.append(None)
            else:
                out.append(float(p.answer is not None and points_hit(p.answer, points, limits[i])))
        return out
