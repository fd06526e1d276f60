"""``answer_schema``: the answer object has the WISE schema.

.. math:: r = 1 \\text{ if the first JSON object in <answer> has bbox (4 numbers), points\\_1, points\\_2 (2 numbers each)}

As in the official code the answer is read regardless of the format reward: a completion whose layout fails but
that holds an ``<answer>…</answer>`` block with a valid object still scores 1 here (and 0 on ``format``). Numbers
must be finite ints or floats (booleans, strings, NaN and infinities fail). An echo of the template placeholders
scores 0.

>>> from rewards.answer_schema import AnswerSchemaReward
>>> ok = '<answer>{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [2, 3]}</answer>'
>>> AnswerSchemaReward()(completions=[ok, '<answer>{"bbox": [1, 2, 3]}</answer>'])
[1.0, 0.0]
"""

from __future__ import annotations

from rewards import register_reward
from rewards._base import Columns, Reward


@register_reward("answer_schema")
class AnswerSchemaReward(Reward):
    """1 if ``<answer>`` holds a valid ``{"bbox", "points_1", "points_2"}`` object, else 0. No options."""

    name = "answer_schema"

    def score(self, parsed, columns: Columns, log_metric=None):
        return [1.0 if p.answer is not None else 0.0 for p in parsed]
