"""Fuzz: every reward on >= 10,000 random and mutated completions — no exception, finite, within its range."""

from __future__ import annotations

import json
import math
import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import get_reward
from wise_rl.formats import TEMPLATE_ECHOES, build_target

BATCH = 100
EXAMPLES = 110  # × BATCH = 11,000 completions
SIZE = 32  # model frame of the fuzz ground truth

RANGES = {
    "format": (0.0, 1.0), "answer_schema": (0.0, 1.0), "bbox_iou": (0.0, 1.0), "bbox_l1": (0.0, 1.0),
    "points": (0.0, 1.0), "mask_iou": (0.0, 1.0), "self_distillation": (-1.0, 1.0), "brevity": (0.0, 1.0),
    "length_l1_max": (0.0, 1.0),
}
BINARY = {"format", "answer_schema", "bbox_l1", "points"}

WEIRD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e308", "1e308", "0", "-0.0", "3.5", "1e-320",
                 "99999999999999999999999", "true", "null", '"7"', "[1]", "{}",
                 # beyond float (OverflowError), beyond int()'s 4,300-digit limit (ValueError), long exponents
                 "9" * 400, "-" + "9" * 400, "1" * 5000, "1e" + "9" * 400, "0." + "0" * 3000 + "1",
                 "1" * 400 + ".5", "[" * 3000 + "1" + "]" * 3000, '"' + "x" * 20000 + '"']


def _number(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(WEIRD_NUMBERS)
    return str(rng.choice([rng.randint(-50, 80), round(rng.uniform(-50, 80), 3)]))


def _valid(rng: random.Random, fragments: list[str], gt_box) -> str:
    x1, y1 = rng.randint(0, SIZE), rng.randint(0, SIZE)
    box = [x1, y1, x1 + rng.randint(0, SIZE), y1 + rng.randint(0, SIZE)]
    if gt_box is not None and rng.random() < 0.5:  # a correct answer, so the gated rewards get exercised
        box = [v + rng.randint(-1, 1) for v in gt_box]
    answer = {"bbox": box,
              "points_1": [rng.randint(0, SIZE), rng.randint(0, SIZE)],
              "points_2": [rng.randint(0, SIZE), rng.randint(0, SIZE)]}
    concise = " ".join(rng.choice(fragments + ["red", "the", "big"]) for _ in range(rng.randint(0, 4)))
    detailed = " ".join(rng.choice(fragments + ["because", "shape", "left"]) for _ in range(rng.randint(0, 12)))
    return build_target(concise, answer, detailed)


def _mutate(text: str, rng: random.Random, fragments: list[str]) -> str:
    kind = rng.randrange(12)
    tags = ["<think>", "</think>", "<answer>", "</answer>", "<d_think>", "</d_think>"]
    if kind == 0:  # drop a tag
        return text.replace(rng.choice(tags), "", 1)
    if kind == 1:  # swap blocks
        a, b = text.split("<answer>", 1) if "<answer>" in text else (text, "")
        return "<answer>" + b + a
    if kind == 2:  # junk JSON
        junk = rng.choice(['{"bbox": [1, 2', "{{}}", "[1,2,3,4]", '{"bbox": "a"}', "{" * 50, "}", "",
                           '{"bbox": ' + "[" * 100_000, '{"a": ' * 5000 + "1" + "}" * 5000])
        return text.split("<answer>")[0] + f"<answer>{junk}</answer>" + text.split("</answer>")[-1]
    if kind == 3:  # weird numbers in the answer
        nums = [_number(rng) for _ in range(8)]
        obj = (f'{{"bbox": [{nums[0]}, {nums[1]}, {nums[2]}, {nums[3]}], "points_1": [{nums[4]}, {nums[5]}], '
               f'"points_2": [{nums[6]}, {nums[7]}]}}')
        return text.split("<answer>")[0] + f"<answer>{obj}</answer>" + text.split("</answer>")[-1]
    if kind == 4:  # unicode / fragments anywhere
        i = rng.randrange(len(text) + 1)
        return text[:i] + rng.choice(fragments) + text[i:]
    if kind == 5:  # template echo
        return text.replace("<think>", TEMPLATE_ECHOES[0] + "<think>", 1)
    if kind == 6:  # truncation
        return text[: rng.randrange(len(text) + 1)]
    if kind == 7:  # duplicated blocks
        return text + text
    if kind == 8:  # nested tags
        return text.replace("</think>", "<think>x</think></think>", 1)
    if kind == 9:  # wrong key names / extra keys
        return text.replace('"points_1"', rng.choice(['"points1"', '"bbox"', '"points_1 "']), 1)
    if kind == 10:  # whitespace everywhere
        return "\n\t ".join(text.split("><"))
    return json.dumps(text)  # quoted


def _batch(rng: random.Random, fragments: list[str], gt_bbox: list) -> list:
    out = []
    for i in range(BATCH):
        r = rng.random()
        if r < 0.1:
            out.append("".join(rng.choice(fragments + ["<", ">", "{", "}", "/"]) for _ in range(rng.randint(0, 20))))
        else:
            text = _valid(rng, fragments, gt_bbox[i])
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                text = _mutate(text, rng, fragments)
            out.append([{"role": "assistant", "content": text}] if rng.random() < 0.2 else text)
    return out


def _columns(rng: random.Random, n: int) -> dict:
    """Aligned ground truth in a SIZE² frame; ~10 % of rows without boxes/points and ~20 % without masks."""
    gt_bbox, gt_points, gt_mask = [], [], []
    for _ in range(n):
        x1, y1 = rng.randint(0, SIZE - 2), rng.randint(0, SIZE - 2)
        box = [x1, y1, rng.randint(x1, SIZE - 1), rng.randint(y1, SIZE - 1)]
        missing = rng.random() < 0.1
        gt_bbox.append(None if missing else box)
        gt_points.append(None if missing else [[box[0], box[1]], [box[2], box[3]]])
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[box[1] : box[3] + 1, box[0] : box[2] + 1] = 1
        mask[:2] = 255
        gt_mask.append(None if rng.random() < 0.2 else mask)
    return {"gt_bbox": gt_bbox, "gt_points": gt_points, "gt_mask": gt_mask}


class FakeEmbedder:
    """Deterministic unit vectors (hash-seeded) instead of MiniLM: the fuzz tests the reward logic, fast."""

    calls = 0

    def encode(self, texts):
        vecs = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts])
        return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def test_fuzz_every_reward_on_10k_completions():
    funcs = {name: get_reward(name) for name in RANGES}
    funcs["bbox_iou_binary"] = get_reward("bbox_iou", threshold=0.5)
    funcs["self_distillation"].embedder = FakeEmbedder()
    seen = []

    fragment = st.text(min_size=1, max_size=12)  # any unicode, surrogates excluded by hypothesis' default

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2**32 - 1), fragments=st.lists(fragment, min_size=1, max_size=6))
    def check(seed, fragments):
        rng = random.Random(seed)
        columns = _columns(rng, BATCH)
        completions = _batch(rng, fragments, columns["gt_bbox"])
        seen.append(len(completions))
        logged = {}
        for name, f in funcs.items():
            values = f(prompts=["q"] * len(completions), completions=completions, log_metric=logged.__setitem__,
                       **columns)
            assert len(values) == len(completions), name
            lo, hi = RANGES.get(name, (0.0, 1.0))
            for v, c in zip(values, completions):
                if v is None:
                    continue
                assert isinstance(v, float) and math.isfinite(v), (name, c, v)
                assert lo <= v <= hi, (name, c, v)
                if name in BINARY or name == "bbox_iou_binary":
                    assert v in (0.0, 1.0), (name, c, v)
        assert all(math.isfinite(v) for v in logged.values())

    check()
    assert sum(seen) >= 10_000


HUGE = {"400-digit int": "9" * 400, "5,000-digit int": "9" * 5000, "NaN": "NaN", "-Infinity": "-Infinity",
        "1e400": "1e400", "long fraction": "1." + "5" * 100}


def _answer_with(number: str) -> str:
    answer = '{"bbox": [1, 2, 3, ' + number + '], "points_1": [1, 2], "points_2": [2, 3]}'
    return f"<think>a</think><answer>{answer}</answer><d_think>b</d_think>"


def test_unusable_numbers_make_the_answer_invalid_and_leave_the_format_judged():
    """A degenerate rollout (a number no float holds) must not raise in any reward: answer invalid, format 1."""
    columns = _columns(random.Random(0), 1)
    columns["gt_bbox"] = [[1, 2, 3, 4]]
    for label, number in HUGE.items():
        completions = [_answer_with(number)]
        for name in RANGES:
            f = get_reward(name)
            if name == "self_distillation":
                f.embedder = FakeEmbedder()
            value = f(prompts=["q"], completions=completions, **columns)[0]
            expected = {"format": 1.0, "length_l1_max": value, "brevity": value}.get(name, 0.0)
            assert value == expected, (label, name, value)
    # A usable exponent and a 64-character literal still read as numbers.
    assert get_reward("answer_schema")(completions=[_answer_with("4.5e1"), _answer_with("4" * 64)]) == [1.0, 1.0]


def _literal():
    """Number literals model text can hold: huge ints, long fractions, exponents of any size, NaN/Infinity."""
    digits = st.builds(lambda d, n: d * n, st.sampled_from(["9", "1", "0"]), st.integers(1, 6000))
    exponent = st.builds(lambda m, e: f"{m}e{e}", st.integers(-99, 99), st.integers(-100_000, 100_000))
    fraction = st.builds(lambda a, n: f"{a}." + "3" * n, st.integers(-5, 900), st.integers(1, 400))
    constant = st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "1E400", "-1e-400"])
    nested = st.builds(lambda k: "[" * k + "1" + "]" * k, st.integers(1, 5000))
    return st.one_of(digits, st.builds(lambda s: "-" + s, digits), exponent, fraction, constant, nested,
                     st.integers(-1000, 1000).map(str))


def test_fuzz_the_eval_path_never_raises_on_model_numbers():
    """Every prompt's parser and the scorer of eval/score, on answers made of hostile number literals."""
    from wise_rl import evaluate, formats
    from wise_rl.masks import BoxDecoder

    gt = np.zeros((20, 30), np.uint8)
    gt[5:10, 5:15] = 1
    row = {"id": "r", "image_size": [30, 20], "model_size": 112, "original_mask": gt}
    decoder = BoxDecoder()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(values=st.lists(_literal(), min_size=8, max_size=8),
           prompt=st.sampled_from(sorted(formats.PROMPT_SPECS)))
    def check(values, prompt):
        v = values
        answer = (f'{{"bbox": [{v[0]}, {v[1]}, {v[2]}, {v[3]}], "points_1": [{v[4]}, {v[5]}], '
                  f'"points_2": [{v[6]}, {v[7]}]}}')
        spec = formats.PROMPT_SPECS[prompt]["layout"]
        text = f"<answer>{answer}</answer>" if spec == "answer-only" else \
            f"<think>x</think><answer>{answer}</answer><d_think>y</d_think>"
        parsed = formats.parse_for_prompt(text, prompt)
        if parsed.answer is not None:
            assert all(math.isfinite(x) for xs in parsed.answer.values() for x in xs)
        rec = evaluate.score_completion(text, row, prompt, decoder, gt=(gt, "original_mask"))
        assert 0.0 <= rec["iou"] <= 1.0
        assert (rec["failure"] is None) == (parsed.answer is not None)

    check()
