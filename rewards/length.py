"""``length_l1_max``: the official (dormant) L1-Max length reward on the concise rationale.

.. math:: r = \\mathrm{clip}(\\alpha\\,(n_{target} - n) + \\delta,\\ 0,\\ 1) \\text{ if correct, else } 0

``n`` = token count of the concise rationale (``<think>`` content, ``tokenizer=`` option as in
``self_distillation``; whitespace words without one). Options ``target`` = 20, ``alpha`` = 3e-4, ``delta`` = 0.5;
"correct" is the gate ``gate`` (``bbox_iou`` | ``mask_iou``) > ``gate_threshold`` (0.5). The three-stage format
must hold. No ground truth → None; echo → 0.

>>> from rewards.length import LengthL1MaxReward
>>> c = '<think>red one</think><answer>{"bbox": [0, 0, 9, 9], "points_1": [1, 1], "points_2": [2, 2]}</answer><d_think>x</d_think>'
>>> LengthL1MaxReward()(completions=[c, c], gt_bbox=[[0, 0, 9, 9], [50, 50, 60, 60]])  # 3e-4 × 18 + 0.5
[0.5054, 0.0]
"""

from __future__ import annotations

from typing import Any

from rewards import register_reward
from rewards._base import Columns
from rewards.distillation import _Compression


@register_reward("length_l1_max")
class LengthL1MaxReward(_Compression):
    """``clip(alpha·(target − n) + delta, 0, 1)`` for a correct answer with concise length ``n``, else 0."""

    name = "length_l1_max"

    def __init__(self, target: int = 20, alpha: float = 3e-4, delta: float = 0.5, tokenizer: Any = None,
                 gate: str = "bbox_iou", gate_threshold: float = 0.5, decoder: Any = "box",
                 decoder_options: dict | None = None):
        if gate is None:
            raise ValueError("length_l1_max needs a gate ('bbox_iou' or 'mask_iou'): it rewards correct answers")
        super().__init__(tokenizer, gate, gate_threshold, decoder, decoder_options)
        self.target, self.alpha, self.delta = float(target), float(alpha), float(delta)

    def score(self, parsed, columns: Columns, log_metric=None):
        passed, rats, concise, detailed = self._prepare(parsed, columns, log_metric, self._gate)
        out: list[float | None] = [None if ok is None else 0.0 for ok in passed]
        for i, n in concise.items():
            if passed[i]:
                out[i] = min(1.0, max(0.0, self.alpha * (self.target - n) + self.delta))
        return out
