"""``mask_iou``: IoU of the mask decoded from the predicted answer against ``gt_mask``.

.. math:: \\mathrm{IoU} = \\frac{|P \\cap T|}{|P \\cup T|} \\text{ over pixels where gt\\_mask} \\ne 255

``T`` = target pixels of ``gt_mask`` (values 1..254), ``P`` = decoded mask; ignore pixels (255) count for neither.
An empty union scores 1 (empty prediction of an empty target, LISA's convention). The answer and ``gt_mask`` are in
the model frame, and so is the ``image`` column the decoder reads. Options: ``decoder`` (``"box"``: the bbox
rasterised, no weights; ``"sam2"``: SAM2 prompted with the box and both points — give
``decoder_options={"path": …}``), or any :class:`wise_rl.masks.MaskDecoder` object. A row without a mask → None; no
valid answer → 0; echo → 0.

>>> import numpy as np
>>> from rewards.mask_iou import MaskIoUReward
>>> from wise_rl.metrics import mask_iou  # the formula, defined once
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

from rewards import register_reward
from rewards._base import Columns, Reward
from rewards._gate import MaskIoUScorer


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

    def load(self) -> None:
        """Build the decoder and load its weights now (training calls this before its first step)."""
        decoder = self._scorer.decoder()
        if callable(getattr(decoder, "load", None)):
            decoder.load()

    def score(self, parsed, columns: Columns, log_metric=None):
        return self._scorer.ious(parsed, columns)
