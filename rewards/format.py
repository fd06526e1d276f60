"""``format``: the strict three-stage layout.

.. math:: r = 1 \\text{ if the completion fullmatches } \\s*<think>.*?</think>\\s*<answer>.*?</answer>\\s*<d\\_think>.*?</d\\_think>\\s* \\text{ else } 0

Whitespace is allowed between and around the blocks, nothing else (DOTALL; the answer's content is not checked
here — that is ``answer_schema``). An echo of the template placeholders scores 0.

>>> from rewards.format import FormatReward
>>> FormatReward()(completions=["<think>a</think>\\n<answer>x</answer> <d_think>b</d_think>", "<think>a</think><answer>x</answer>"])
[1.0, 0.0]
"""

from __future__ import annotations

from rewards import register_reward
from rewards._base import Columns, Reward


@register_reward("format")
class FormatReward(Reward):
    """1 if the three-stage layout holds, else 0. No options."""

    name = "format"

    def score(self, parsed, columns: Columns, log_metric=None):
        return [1.0 if p.format_ok else 0.0 for p in parsed]
