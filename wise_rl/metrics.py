"""Segmentation metrics, defined once: per-sample intersection/union and the ``lisa`` and ``seg-zero`` protocols.

Per sample (masks H×W, 1 = target, 0 = background, 255 = ignore; the prediction is 0/1)::

    T = target pixels (value 1..254), G = ignore pixels (value 255), P = predicted pixels
    I = |P ∩ T|                      (ignore pixels excluded: P ∩ G counts nowhere)
    U = |(P ∪ T) \\ G|
    IoU = I / U,  and IoU = 1 when U = 0 (empty target, empty prediction: LISA's "no-object" rule)

A completion with no usable answer (it did not parse) has no prediction: I = 0, U = |T|, IoU = 0 (for an empty
target too — a failure never scores). Aggregates over samples ``i``::

    gIoU  = mean_i IoU_i                 ("generalised" IoU: every sample weighs the same)
    cIoU  = Σ_i I_i / Σ_i U_i            ("cumulative" IoU: large objects weigh more)
    acc50 = share of samples with IoU_i ≥ 0.5

Protocols. ``lisa`` (default) is the reference scorer of LISA (``intersectionAndUnionGPU`` with ``ignore_index=255``):
ignore pixels are excluded from I and U, a sample with U = 0 counts IoU 1, and every sample of the source is in
the mean. LISA adds 1e-5 to U in the per-sample division and 1e-10 in cIoU; we divide exactly (the difference is
below 1e-7 for any real mask).

``seg-zero`` reproduces the Seg-Zero scorer for comparison with papers that use it. It reads the hub conversion
of ReasonSeg, in which "ignore" polygons became foreground, so ignore pixels count as TARGET
(``I' = I + |P ∩ G|``, ``U' = U + |G|``), and it drops samples with ``U' = 0`` from gIoU, cIoU and acc50 without
saying so. We drop them the same way but count them (``n_dropped_empty_union``). Failed parses score
``I' = 0, U' = |T| + |G|`` as in Seg-Zero.

:func:`score_mask` returns a per-sample record; :func:`aggregate` computes both protocols from such records (each
keeps ``n_ignore`` = |G| and ``ignore_hits`` = |P ∩ G| next to the lisa counts). Full rules: ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from wise_rl.data.schema import IGNORE_INDEX

PROTOCOLS = ("lisa", "seg-zero")

# Failure reasons added by the scorer (parse failures use formats.ParsedCompletion.failure names).
MISSING_PREDICTION = "missing_prediction"  # a dataset id with no prediction (score) or not evaluated (eval merge)
UNKNOWN_ID = "unknown_id"  # a prediction whose id is not in the dataset
DECODER_ERROR = "decoder_error"  # the mask decoder raised on this answer


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metric protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def _as_target(gt_mask: Any) -> np.ndarray:
    gt = np.asarray(gt_mask)
    if gt.dtype == bool:
        gt = gt.astype(np.uint8)
    if gt.ndim != 2:
        raise ValueError(f"gt_mask must be a 2-D H×W array, got shape {gt.shape}")
    return gt


def score_mask(pred_mask: np.ndarray | None, gt_mask: np.ndarray) -> dict[str, Any]:
    """Counts of one sample under the lisa definition (see the module docstring).

    ``pred_mask`` None means "no prediction" (a failed parse): ``I = 0, U = |T|, IoU = 0``.
    Returns ``intersection``, ``union``, ``iou``, ``target_pixels`` (|T|), ``pred_pixels`` (|P \\ G|),
    ``n_ignore`` (|G|) and ``ignore_hits`` (|P ∩ G|). Shapes must match: rescale first (``wise_rl.frames``).
    """
    gt = _as_target(gt_mask)
    ignore = gt == IGNORE_INDEX
    target = (gt > 0) & ~ignore
    n_target, n_ignore = int(target.sum()), int(ignore.sum())
    if pred_mask is None:
        return {
            "intersection": 0, "union": n_target, "iou": 0.0, "target_pixels": n_target, "pred_pixels": 0,
            "n_ignore": n_ignore, "ignore_hits": 0,
        }
    pred = np.asarray(pred_mask)
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction mask shape {pred.shape} differs from the target mask shape {gt.shape}; "
            "both must be in the same (original) frame"
        )
    pred = pred.astype(bool) if pred.dtype == bool else (pred > 0) & (pred != IGNORE_INDEX)
    valid_pred = pred & ~ignore
    intersection = int((valid_pred & target).sum())
    union = int((valid_pred | target).sum())
    iou = 1.0 if union == 0 else intersection / union
    return {
        "intersection": intersection, "union": union, "iou": iou, "target_pixels": n_target,
        "pred_pixels": int(valid_pred.sum()), "n_ignore": n_ignore, "ignore_hits": int((pred & ignore).sum()),
    }


def sample_iou(pred_mask: np.ndarray | None, gt_mask: np.ndarray) -> tuple[int, int, float]:
    """``(intersection, union, iou)`` of one sample, lisa definition; ``pred_mask=None`` is a failed parse."""
    s = score_mask(pred_mask, gt_mask)
    return s["intersection"], s["union"], s["iou"]


def protocol_counts(record: dict[str, Any], protocol: str = "lisa") -> tuple[int, int, float | None]:
    """``(I, U, IoU)`` of a record under ``protocol``; IoU is None when seg-zero drops the sample (U' = 0)."""
    _check_protocol(protocol)
    i, u = int(record["intersection"]), int(record["union"])
    failed = record.get("failure") is not None
    if protocol == "lisa":
        return i, u, (0.0 if failed else (1.0 if u == 0 else i / u))
    i2 = i + int(record.get("ignore_hits", 0))
    u2 = u + int(record.get("n_ignore", 0))
    if u2 == 0:
        return i2, u2, None
    return i2, u2, (0.0 if failed else i2 / u2)


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def cost_figures(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Cost of generating the records (keys absent from all records give None).

    ``think_tokens_mean`` / ``_median``: tokens of the ``<think>`` content (policy tokenizer), over samples that
    have one; ``completion_tokens_mean``: generated tokens per sample; ``latency_mean_s``: generate seconds per
    sample (batch time / batch size); ``samples_per_s`` = 1 / latency_mean_s.
    """
    records = list(records)

    def values(key):
        return [float(r[key]) for r in records if r.get(key) is not None]

    think, comp, lat = values("think_tokens"), values("completion_tokens"), values("latency_s")
    latency = _mean(lat)
    return {
        "think_tokens_mean": _mean(think),
        "think_tokens_median": float(statistics.median(think)) if think else None,
        "completion_tokens_mean": _mean(comp),
        "latency_mean_s": latency,
        "samples_per_s": (1.0 / latency) if latency else None,
    }


def _with_missing_predictions(records: Iterable[dict[str, Any]],
                              expected_ids: Iterable[str] | None) -> list[dict[str, Any]]:
    """``records`` as a list, plus a ``missing_prediction`` failure (I = U = 0) for each expected id without one;
    a second record for an id (other than an ``unknown_id`` one) raises ``ValueError``."""
    records = list(records)
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        rid = str(r["id"])
        if rid in seen and r.get("failure") != UNKNOWN_ID:
            raise ValueError(f"duplicate record for id {rid!r}")
        seen[rid] = r
    for rid in expected_ids if expected_ids is not None else ():
        if str(rid) not in seen:
            rec = {"id": str(rid), "intersection": 0, "union": 0, "iou": 0.0, "failure": MISSING_PREDICTION,
                   "n_ignore": 0, "ignore_hits": 0, "format_ok": False}
            records.append(rec)
            seen[str(rid)] = rec
    return records


def aggregate(
    records: Iterable[dict[str, Any]],
    protocol: str = "lisa",
    expected_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """gIoU, cIoU, acc50, counts and cost figures of per-sample records under ``protocol``.

    Each record needs ``id``, ``intersection``, ``union``, ``failure`` (None or a reason) and, for seg-zero,
    ``n_ignore`` / ``ignore_hits``; ``format_ok`` and the cost keys are optional. A record with
    ``failure == "unknown_id"`` has no ground truth: it is not a sample of the source, so it is not in ``n``,
    ``n_failed``, ``failures`` nor the means, and is counted in ``n_unknown_ids`` (``n_failed ≤ n`` always).

    ``expected_ids`` (every id of the source): ids without a record are added as failures
    ``missing_prediction`` (I = 0, U = |T| is unknown here, so U = 0: they lower gIoU and acc50 but not cIoU —
    :func:`wise_rl.evaluate.score_predictions` adds them with their true |T| when it has the dataset).

    Returns ``protocol``, ``n`` (samples of the source), ``n_scored`` (samples in the means), ``n_failed``,
    ``failures`` (reason → count, samples only), ``n_unknown_ids``, ``gIoU``, ``cIoU``, ``acc50``,
    ``format_valid`` (share of the n samples whose completion matched the prompt's layout), ``n_empty_union``,
    ``n_dropped_empty_union`` (seg-zero only drops), and the :func:`cost_figures`.
    """
    _check_protocol(protocol)
    records = _with_missing_predictions(records, expected_ids)
    failures: Counter[str] = Counter()
    ious: list[float] = []
    sum_i = sum_u = 0
    n = n_empty = n_dropped = n_format = n_unknown = 0
    for r in records:
        if r.get("failure") == UNKNOWN_ID:  # not a sample: counted apart, so that n_failed ≤ n
            n_unknown += 1
            continue
        if r.get("failure") is not None:
            failures[str(r["failure"])] += 1
        n += 1
        n_format += bool(r.get("format_ok"))
        i, u, iou = protocol_counts(r, protocol)
        if int(r["union"]) == 0 and r.get("failure") is None:
            n_empty += 1
        if iou is None:  # seg-zero: empty union, dropped (and counted)
            n_dropped += 1
            continue
        ious.append(iou)
        sum_i += i
        sum_u += u

    giou = _mean(ious)
    out = {
        "protocol": protocol,
        "n": n,
        "n_scored": len(ious),
        "n_failed": int(sum(failures.values())),
        "failures": dict(sorted(failures.items())),
        "n_unknown_ids": n_unknown,
        "gIoU": giou,
        "cIoU": (sum_i / sum_u) if sum_u > 0 else None,  # undefined when every scored union is empty
        "acc50": _mean([1.0 if v >= 0.5 else 0.0 for v in ious]),
        "format_valid": (n_format / n) if n else None,
        "n_empty_union": n_empty,
        "n_dropped_empty_union": n_dropped,
        "intersection_sum": sum_i,
        "union_sum": sum_u,
    }
    out.update(cost_figures(r for r in records if r.get("failure") != UNKNOWN_ID))
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite metric {key}={value}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Boxes, points and masks of one sample: the rewards, evaluation, ShapeWorld baselines, pre-training and the demo
# all score with these (defined here once)
# ----------------------------------------------------------------------------------------------------------------
def box_iou(pred: Sequence[float], gt: Sequence[float]) -> float:
    """The WISE pixel-inclusive box IoU with the official strict-overlap test (``[x1, y1, x2, y2]``, any frame)::

        ix1, iy1 = max(px1, gx1), max(py1, gy1);  ix2, iy2 = min(px2, gx2), min(py2, gy2)
        inter = (ix2 − ix1 + 1)(iy2 − iy1 + 1)   if ix1 < ix2 and iy1 < iy2 (strict)   else 0
        area  = (x2 − x1 + 1)(y2 − y1 + 1);  IoU = inter / (area_p + area_g − inter)

    A non-positive or non-finite union scores 0; the value is clipped to [0, 1].

    >>> box_iou([0, 0, 9, 9], [5, 5, 14, 14]) == 25 / 175
    True
    >>> box_iou([0, 0, 5, 5], [5, 5, 10, 10])  # touching corners: ix1 == ix2, no strict overlap
    0.0
    """
    px1, py1, px2, py2 = (float(v) for v in pred)
    gx1, gy1, gx2, gy2 = (float(v) for v in gt)
    ix1, iy1, ix2, iy2 = max(px1, gx1), max(py1, gy1), min(px2, gx2), min(py2, gy2)
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if ix1 < ix2 and iy1 < iy2 else 0.0
    union = (px2 - px1 + 1) * (py2 - py1 + 1) + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - inter
    if not (math.isfinite(inter) and math.isfinite(union)) or union <= 0:
        return 0.0
    return min(1.0, max(0.0, inter / union))


def box_l1(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Mean absolute difference of the 4 box coordinates, in pixels (inf when it overflows)."""
    return sum(abs(float(p) - float(g)) for p, g in zip(pred, gt)) / 4.0


def points_distance(points: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> float:
    """Order-free mean Euclidean distance of two points to two points, in pixels:
    ``min over the two pairings of (d(p1, g_a) + d(p2, g_b)) / 2``."""
    (a, b), (g, h) = points, gt
    direct = (math.hypot(a[0] - g[0], a[1] - g[1]) + math.hypot(b[0] - h[0], b[1] - h[1])) / 2
    swapped = (math.hypot(a[0] - h[0], a[1] - h[1]) + math.hypot(b[0] - g[0], b[1] - g[1])) / 2
    return min(direct, swapped)


def points_hit(answer: dict, gt_points: Sequence[Sequence[float]], threshold: float = 100.0) -> bool:
    """The official points check: both predicted points, cast to int, lie in the predicted bbox (inclusive) and
    :func:`points_distance` to ``gt_points`` < ``threshold`` px. ``answer`` has ``bbox``, ``points_1``, ``points_2``.

    >>> points_hit({"bbox": [0, 0, 50, 50], "points_1": [10, 10], "points_2": [40.9, 40]}, [[40, 40], [10, 10]])
    True
    """
    x1, y1, x2, y2 = answer["bbox"]
    points = [[float(int(answer[k][0])), float(int(answer[k][1]))] for k in ("points_1", "points_2")]
    if not all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in points):
        return False
    return points_distance(points, gt_points) < threshold


def mask_iou(pred_mask: np.ndarray | None, gt_mask: np.ndarray) -> float:
    """IoU of one sample under the lisa definition (ignore pixels excluded, empty union → 1, no prediction → 0):
    the ``iou`` of :func:`score_mask`. Shapes must match (``ValueError`` otherwise).

    >>> gt = np.zeros((20, 20), np.uint8); gt[0:10, 0:10] = 1
    >>> pred = np.zeros((20, 20), np.uint8); pred[5:15, 5:15] = 1
    >>> mask_iou(pred, gt) == 25 / 175
    True
    """
    return score_mask(pred_mask, gt_mask)["iou"]


def answer_box_ious(answers: Sequence[dict[str, Any] | None], gt_bboxes: Sequence[Sequence[float]]) -> list[float]:
    """:func:`box_iou` of each answer's ``bbox`` against its ground-truth box; an answer that is None or has no
    ``bbox`` (no parse) scores 0. ``ValueError`` when the lengths differ.

    >>> answer_box_ious([{"bbox": [0, 0, 9, 9]}, None], [[0, 0, 9, 9], [0, 0, 9, 9]])
    [1.0, 0.0]
    """
    if len(answers) != len(gt_bboxes):
        raise ValueError(f"{len(answers)} answers for {len(gt_bboxes)} ground-truth boxes")
    return [box_iou(a["bbox"], g) if a and a.get("bbox") else 0.0 for a, g in zip(answers, gt_bboxes)]


def box_scores(answers: Sequence[dict[str, Any] | None], gt_bboxes: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Box-level scores of a set of answers: ``box_acc50`` = share with :func:`box_iou` > 0.5, ``box_mean_iou``,
    ``n``. An answer that is None or has no ``bbox`` (no parse) scores IoU 0. ``ValueError`` when the lengths differ.

    >>> box_scores([{"bbox": [0, 0, 9, 9]}, None], [[0, 0, 9, 9], [0, 0, 9, 9]])
    {'box_acc50': 0.5, 'box_mean_iou': 0.5, 'n': 2}
    """
    ious = answer_box_ious(answers, gt_bboxes)
    n = len(ious)
    return {"box_acc50": sum(i > 0.5 for i in ious) / n if n else 0.0,
            "box_mean_iou": sum(ious) / n if n else 0.0, "n": n}
