"""``format_think_answer``: the strict two-block layout the WISE inference prompts ask for.

.. math:: r = 1 \\text{ if the completion fullmatches } \\s*<think>.*?</think>\\s*<answer>.*?</answer>\\s* \\text{ else } 0

The ``format`` reward's rule for a policy trained to answer without a detailed part (the concise-only ablation of
``wise-rl demo``): whitespace is allowed between and around the two blocks, nothing else (DOTALL), so a trailing
``<d_think>`` block scores 0 here as its absence scores 0 on ``format``. The answer's content is ``answer_schema``'s
business. An echo of the template placeholders scores 0. The layout is :func:`wise_rl.formats.parse_completion`'s
``think-answer``.

>>> from rewards.format_think_answer import ThinkAnswerFormatReward
>>> ThinkAnswerFormatReward()(completions=["<think>a</think>\\n<answer>x</answer>", "<think>a</think><answer>x</answer><d_think>b</d_think>"])
[1.0, 0.0]
"""

from __future__ import annotations

from rewards import register_reward
from rewards._base import Columns, Reward
from wise_rl.formats import parse_completion


@register_reward("format_think_answer")
class ThinkAnswerFormatReward(Reward):
    """1 if the two-block layout <think>…</think><answer>…</answer> holds, else 0. No options."""

    name = "format_think_answer"

    def score(self, parsed, columns: Columns, log_metric=None):
        return [1.0 if parse_completion(p.text, layout="think-answer").format_ok else 0.0 for p in parsed]
