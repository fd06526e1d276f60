"""The correctness gate shared by several rewards: is an answer right (bbox or mask IoU > a threshold)?

``Gate(metric, threshold)`` with ``metric`` ``bbox_iou`` (:func:`wise_rl.metrics.box_iou` of the predicted box) or
``mask_iou`` (:func:`wise_rl.metrics.mask_iou` of the mask decoded from the answer by a :mod:`wise_rl.masks`
decoder, through :class:`MaskIoUScorer`). It lives apart from the reward modules so that rewards import it and it
imports no reward back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from rewards._base import Columns, as_box
from wise_rl.data.schema import as_mask_array
from wise_rl.formats import ParsedCompletion
from wise_rl.metrics import box_iou, mask_iou

_SHARED_DECODERS: dict[tuple[str, str], Any] = {}


class MaskIoUScorer:
    """Decodes the answers of a batch in one ``decode_batch`` call and scores them against ``gt_mask``."""

    def __init__(self, decoder: Any = "box", decoder_options: dict | None = None, reward: str = "mask_iou"):
        self.decoder_name = decoder if isinstance(decoder, str) else None
        self.decoder_options = dict(decoder_options or {})
        self.reward = reward
        self._decoder = None if isinstance(decoder, str) else decoder
        if isinstance(decoder, str):
            from wise_rl.masks import DECODERS

            if decoder not in DECODERS:
                raise ValueError(f"reward {reward!r}: unknown decoder {decoder!r}; known: {', '.join(DECODERS)}")

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.decoder_name is not None:
            state["_decoder"] = None  # rebuilt lazily (the SAM2 weights stay out of the pickle)
        return state

    def decoder(self):
        """The decoder, built lazily and shared by every scorer of this process with the same name and options
        (so ``mask_iou`` and a ``mask_iou`` gate hold one SAM2, and the second reuses the first one's masks)."""
        if self._decoder is None:
            from wise_rl.masks import get_mask_decoder

            key = (self.decoder_name, repr(sorted(self.decoder_options.items())))
            if key not in _SHARED_DECODERS:
                _SHARED_DECODERS[key] = get_mask_decoder(self.decoder_name, **self.decoder_options)
            self._decoder = _SHARED_DECODERS[key]
        return self._decoder

    def ious(self, parsed, columns: Columns) -> list[float | None]:
        out: list[float | None] = [None] * len(parsed)
        todo_rows, images, answers, gts = [], [], [], []
        for i, (p, gt, image) in enumerate(zip(parsed, columns.get("gt_mask"), columns.get("image"))):
            try:
                gt = as_mask_array(gt)
            except ValueError as e:
                raise ValueError(f"reward {self.reward!r}: gt_mask of row {i}: {e}") from None
            if gt is None:
                continue
            if p.answer is None:
                out[i] = 0.0
                continue
            height, width = gt.shape
            if image is None:
                from wise_rl.masks import BoxDecoder

                if not isinstance(self.decoder(), BoxDecoder):
                    raise ValueError(f"reward {self.reward!r}: row {i} has a gt_mask but no image for the decoder")
                image = (width, height)
            elif isinstance(image, Image.Image) and image.size != (width, height):
                raise ValueError(
                    f"reward {self.reward!r}: row {i}: image {image.size} and gt_mask {(width, height)} (W, H) are "
                    "not in the same frame"
                )
            todo_rows.append(i)
            images.append(image)
            answers.append(p.answer)
            gts.append(gt)
        if todo_rows:
            masks = self.decoder().decode_batch(images, answers)
            for i, pred, gt in zip(todo_rows, masks, gts):
                out[i] = mask_iou(pred, gt)
        return out


# ----------------------------------------------------------------------------------------------------------------
# The correctness gate
# ----------------------------------------------------------------------------------------------------------------
GATES = ("bbox_iou", "mask_iou")


class Gate:
    """Is the answer correct? ``metric`` (``bbox_iou`` | ``mask_iou``) > ``threshold``.

    ``evaluate`` returns True / False per row, or None where the row has no ground truth for the metric.
    ``mask_iou`` decodes the predicted answer with ``decoder`` (``box`` | ``sam2`` + ``decoder_options``).
    """

    def __init__(self, metric: str = "bbox_iou", threshold: float = 0.5, decoder: Any = "box",
                 decoder_options: dict | None = None, reward: str = "reward"):
        if metric not in GATES:
            raise ValueError(f"reward {reward!r}: unknown gate {metric!r}; expected one of {', '.join(GATES)}")
        self.metric, self.threshold, self.reward = metric, float(threshold), reward
        self._mask = None
        if metric == "mask_iou":
            self._mask = MaskIoUScorer(decoder, decoder_options or {}, reward=reward)

    def required_columns(self) -> tuple[str, ...]:
        return ("gt_bbox",) if self.metric == "bbox_iou" else ("gt_mask",)

    def values(self, parsed: list[ParsedCompletion], columns: Columns) -> list[float | None]:
        if self.metric == "bbox_iou":
            out: list[float | None] = []
            for i, (p, gt) in enumerate(zip(parsed, columns.get("gt_bbox"))):
                box = as_box(gt, self.reward, i)
                out.append(None if box is None else (0.0 if p.answer is None else box_iou(p.answer["bbox"], box)))
            return out
        return self._mask.ious(parsed, columns)

    def evaluate(self, parsed: list[ParsedCompletion], columns: Columns) -> list[bool | None]:
        return [None if v is None else v > self.threshold for v in self.values(parsed, columns)]


def log_gate_metrics(log_metric, prefix: str, passed: Sequence[bool | None], concise: Sequence[int],
                     detailed: Sequence[int]) -> None:
    """Log gate pass rate (over rows with ground truth) and mean concise / detailed token counts (well-formed rows)."""
    if log_metric is None:
        return
    judged = [p for p in passed if p is not None]
    if judged:
        log_metric(f"{prefix}/gate_pass_rate", sum(judged) / len(judged))
    if concise:
        log_metric(f"{prefix}/concise_tokens_mean", sum(concise) / len(concise))
        log_metric(f"{prefix}/detailed_tokens_mean", sum(detailed) / len(detailed))
