"""``mask_iou``: IoU of the mask decoded from the predicted answer against ``gt_mask``.

.. math:: \\mathrm{IoU} = \\frac{|P \\cap T|}{|P \\cup T|} \\text{ over pixels where gt\\_mask} \\ne 255

``T`` = target pixels of ``gt_mask`` (values 1..254), ``P`` = decoded mask; ignore pixels (255) count for neither.
An empty union scores 1 (empty prediction of an empty target, LISA's convention). The answer and ``gt_mask`` are in
the model frame, and so is the ``image`` column the decoder reads. Options: ``decoder`` (``"box"``: the bbox
rasterised, no weights; ``"sam2"``: SAM2 prompted with the box and both points — give
``decoder_options={"path": …}``), or any :class:`wise_rl.masks.MaskDecoder` object. A row without a mask → None; no
valid answer → 0; echo → 0.

>>> import numpy as np
>>> from rewards.mask_iou import MaskIoUReward, mask_iou
>>> gt = np.zeros((20, 20), np.uint8); gt[0:10, 0:10] = 1
>>> pred = np.zeros((20, 20), np.uint8); pred[5:15, 5:15] = 1
>>> mask_iou(pred, gt) == 25 / 175
True
>>> c = '<answer>{"bbox": [5, 5, 14, 14], "points_1": [9, 9], "points_2": [9, 9]}</answer>'
>>> MaskIoUReward()(completions=[c, c], gt_mask=[gt, None]) == [25 / 175, None]
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from rewards import register_reward
from rewards._base import Columns, Reward
from wise_rl.data.schema import IGNORE_INDEX, as_mask_array


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of a 0/1 prediction against a ground-truth mask with ignore pixels (255) excluded; empty union → 1."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if pred.shape != gt.shape:
        raise ValueError(f"predicted mask {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = gt != IGNORE_INDEX
    target = (gt > 0) & valid
    predicted = (pred > 0) & valid
    union = int(np.count_nonzero(target | predicted))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(target & predicted)) / union


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


@register_reward("mask_iou")
class MaskIoUReward(Reward):
    """IoU of the decoded predicted mask against ``gt_mask`` (ignore pixels excluded); None without a mask."""

    name = "mask_iou"
    ground_truth = ("gt_mask",)

    def __init__(self, decoder: Any = "box", decoder_options: dict | None = None):
        super().__init__()
        self.decoder = decoder
        self.decoder_options = dict(decoder_options or {})
        self._scorer = MaskIoUScorer(decoder, self.decoder_options, reward=self.name)

    def score(self, parsed, columns: Columns, log_metric=None):
        return self._scorer.ious(parsed, columns)
