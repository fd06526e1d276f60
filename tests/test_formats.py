import json

import pytest

from wise_rl import formats
from wise_rl.formats import (
    answer_dict,
    build_target,
    parse_completion,
    parse_for_prompt,
    render_prompt,
)

ANSWER = {"bbox": [10, 20, 110, 220], "points_1": [30, 40], "points_2": [50, 60]}


def test_three_stage_round_trip():
    text = build_target("red is largest", ANSWER, "Three shapes. The red square is the largest.")
    assert text.startswith("<think>red is largest</think><answer>{")
    assert text.endswith("<d_think>Three shapes. The red square is the largest.</d_think>")
    parsed = parse_completion(text)
    assert parsed.ok and parsed.failure is None
    assert parsed.concise == "red is largest"
    assert parsed.detailed == "Three shapes. The red square is the largest."
    assert parsed.answer == {k: [float(v) for v in vals] for k, vals in ANSWER.items()}
    assert parsed.bbox == [10.0, 20.0, 110.0, 220.0]
    assert parsed.points == [[30.0, 40.0], [50.0, 60.0]]


def test_verbose_and_answer_targets():
    verbose = build_target("short", ANSWER, "long explanation", mode="verbose")
    assert verbose == "<think>long explanation</think><answer>" + formats.answer_json(ANSWER) + "</answer>"
    parsed = parse_completion(verbose, layout="think-answer")
    assert parsed.ok and parsed.concise == "long explanation" and parsed.detailed is None
    only = build_target("", ANSWER, "", mode="answer")
    assert parse_for_prompt(only, "answer-only").ok
    with pytest.raises(ValueError, match="unknown target mode"):
        build_target("a", ANSWER, "b", mode="nope")


def test_answer_json_is_valid_json_with_int_coordinates():
    answer = answer_dict([1.4, 2.6, 30, 40], [[5.5, 6], [7, 8.49]])
    assert answer == {"bbox": [1, 3, 30, 40], "points_1": [6, 6], "points_2": [7, 8]}
    assert json.loads(formats.answer_json(answer)) == answer


def test_whitespace_between_and_around_blocks_is_tolerated():
    text = '  \n<think> a </think>\n\n<answer>\n{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}\n</answer>\t<d_think>b</d_think>\n'
    parsed = parse_completion(text)
    assert parsed.ok and parsed.concise == "a" and parsed.detailed == "b"


@pytest.mark.parametrize(
    "text, failure",
    [
        ("", "empty"),
        ("   ", "empty"),
        ('<answer>{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}</answer><d_think>b</d_think>', "missing_think"),
        ("<think>a</think><d_think>b</d_think>", "missing_answer"),
        ('<think>a</think><answer>{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}</answer>', "missing_d_think"),
        (
            '<answer>{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}</answer><think>a</think><d_think>b</d_think>',
            "wrong_order",
        ),
        (
            'hello <think>a</think><answer>{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}</answer><d_think>b</d_think>',
            "unexpected_text",
        ),
        ("<think>a</think><answer>no json here</answer><d_think>b</d_think>", "answer_not_json"),
        ('<think>a</think><answer>{"bbox":[1,2,3]}</answer><d_think>b</d_think>', "answer_schema"),
        ('<think>a</think><answer>{"bbox":[1,2,3,true],"points_1":[1,2],"points_2":[2,3]}</answer><d_think>b</d_think>', "answer_schema"),
        ('<think>a</think><answer>{"bbox":[1,2,3,NaN],"points_1":[1,2],"points_2":[2,3]}</answer><d_think>b</d_think>', "answer_schema"),
        (
            '<think> streamlined thinking process here </think><answer>{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}</answer><d_think>b</d_think>',
            "echo",
        ),
    ],
)
def test_malformed_completions_fail_with_a_reason(text, failure):
    parsed = parse_completion(text)
    assert not parsed.ok
    assert parsed.failure == failure


def test_format_failure_still_exposes_the_answer_object():
    parsed = parse_completion('<think>a</think><answer>{"bbox":[1,2,3,4],"points_1":[1,2],"points_2":[2,3]}</answer>')
    assert not parsed.format_ok and parsed.failure == "missing_d_think"
    assert parsed.bbox == [1.0, 2.0, 3.0, 4.0]


def test_conversational_completion():
    text = build_target("c", ANSWER, "d")
    assert parse_completion([{"role": "assistant", "content": text}]).ok
    assert parse_completion([{"role": "assistant", "content": [{"type": "text", "text": text}]}]).ok


def test_official_training_prompt_word_for_word():
    expected = (
        "Please find 'the largest red shape' with bbox and points."
        "Compare the difference between objects and find the most closely matched one."
        "Output the detailed thinking process in <d_think> </d_think>, the streamlined thinking process in "
        "<think> </think> and final answer in <answer> </answer> tags."
        "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
        "i.e., <think> streamlined thinking process here </think>"
        '<answer>{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [35,180]}</answer>'
        "<d_think> detailed thinking process here </d_think>"
    )
    assert render_prompt("wise-train", "The Largest Red Shape.") == expected


def test_inference_prompts_ask_for_their_own_layout():
    wise, wise_s, verbose = (render_prompt(n, "q") for n in ("wise", "wise-s", "verbose"))
    for prompt in (wise, wise_s, verbose):
        assert "<d_think>" not in prompt and "<answer>" in prompt
    assert "within 10 words" in wise_s and "within 10 words" not in wise
    assert "streamlined" not in verbose
    assert formats.PROMPT_SPECS["wise-s"]["stop"] == "</answer>"
    with pytest.raises(ValueError, match="known: "):
        render_prompt("wise-x", "q")


def test_compact_prompts_ask_for_the_same_layouts_in_fewer_words():
    for name in ("verbose", "wise", "wise-s", "wise-train"):
        compact = formats.styled_prompt(name, "compact")
        assert compact == name + "-compact" and formats.styled_prompt(compact, "official") == name
        assert formats.PROMPT_SPECS[compact] == formats.PROMPT_SPECS[name]
        text, official = render_prompt(compact, "The red one."), render_prompt(name, "The red one.")
        assert text.endswith(render_prompt("answer-only", "The red one.")) and len(text) < len(official) / 2
        assert ("<d_think>" in text) == (name == "wise-train") and "<think>" in text and "<answer>" in text
    assert "within 10 words" in render_prompt("wise-s-compact", "q")
    assert formats.styled_prompt("answer-only", "compact") == "answer-only"
    assert formats.styled_prompt("wise-train,wise", "compact") == "wise-train-compact,wise-compact"
    with pytest.raises(ValueError, match="'official' or 'compact'"):
        formats.styled_prompt("wise", "short")
    with pytest.raises(ValueError, match="unknown prompt template 'wise-x'"):
        formats.styled_prompt("wise-x", "compact")
    # the corpus of built tokenizers stays on the official templates (adding one must not change a built model)
    assert set(formats.OFFICIAL_PROMPTS) == {n for n in formats.available_prompts() if "compact" not in n}
