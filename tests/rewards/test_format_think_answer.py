"""``format_think_answer``: the two-block layout of the concise-only ablation, on hand-made completions."""

from __future__ import annotations

import pytest

from rewards import available_rewards, get_reward
from wise_rl.formats import TEMPLATE_ECHOES, build_target

ANSWER = {"bbox": [0, 0, 9, 9], "points_1": [2, 2], "points_2": [6, 6]}
CONCISE = build_target("the red square", ANSWER, "", "concise")
THREE_STAGE = build_target("the red square", ANSWER, "it is red and square")


def test_the_concise_target_is_the_two_block_layout():
    assert CONCISE == ('<think>the red square</think><answer>{"bbox": [0, 0, 9, 9], "points_1": [2, 2], '
                       '"points_2": [6, 6]}</answer>')


@pytest.mark.parametrize("completion, value", [
    (CONCISE, 1.0),
    ("\n<think>a</think>\n <answer>x</answer>\n", 1.0),  # whitespace around and between the blocks
    (THREE_STAGE, 0.0),  # a trailing <d_think> is text outside the layout
    (CONCISE.replace("<think>the red square</think>", ""), 0.0),  # no think block
    ('<answer>{}</answer><think>a</think>', 0.0),  # wrong order
    (CONCISE + " and more", 0.0),
    ("", 0.0),
    (CONCISE.replace("<think>the red square</think>", TEMPLATE_ECHOES[0]), 0.0),  # an echo of the prompt
])
def test_values_on_known_completions(completion, value):
    reward = get_reward("format_think_answer")
    assert reward(prompts=["q"], completions=[completion]) == [value]
    assert reward(prompts=["q"], completions=[[{"role": "assistant", "content": completion}]]) == [value]


def test_registered_and_the_three_stage_format_disagrees_on_both_layouts():
    assert "format_think_answer" in available_rewards()
    assert get_reward("format_think_answer").__name__ == "format_think_answer"
    both = [CONCISE, THREE_STAGE]
    assert get_reward("format")(completions=both) == [0.0, 1.0]
    assert get_reward("format_think_answer")(completions=both) == [1.0, 0.0]
    # the answer-reading rewards score the two-block completion as they score the three-stage one
    for name in ("answer_schema", "bbox_iou"):
        scores = get_reward(name)(completions=both, gt_bbox=[[0, 0, 9, 9]] * 2)
        assert scores == [1.0, 1.0], name


def test_docstring_example_runs():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("rewards.format_think_answer"))
    assert result.failed == 0 and result.attempted > 0
