"""The WISE rewards: hand-computed values per reward, the registry, pickling, plug-ins and the embedding path."""

from __future__ import annotations

import math
import pickle
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import rewards
from rewards import available_rewards, get_reward, get_rewards, register_reward
from wise_rl.formats import TEMPLATE_ECHOES, build_target

GT_BOX = [0.0, 0.0, 9.0, 9.0]
GT_POINTS = [[2.0, 2.0], [6.0, 6.0]]
CONCISE = "the red square"
DETAILED = "the red square at the top left is larger than the blue circle and matches the question"


def comp(bbox=(0, 0, 9, 9), p1=(2, 2), p2=(6, 6), concise=CONCISE, detailed=DETAILED) -> str:
    return build_target(concise, {"bbox": list(bbox), "points_1": list(p1), "points_2": list(p2)}, detailed)


PERFECT = comp()
ECHO = PERFECT.replace(f"<think>{CONCISE}</think>", TEMPLATE_ECHOES[0])
ECHO_D = PERFECT.replace(f"<d_think>{DETAILED}</d_think>", TEMPLATE_ECHOES[1])
MALFORMED = "<think>the red square</think><answer>bbox: 0 0 9 9</answer><d_think>x</d_think>"


def call(name, completions, **columns):
    options = columns.pop("options", {})
    return get_reward(name, **options)(prompts=["q"] * len(completions), completions=completions, **columns)


def col(value, n):
    return [value] * n


# ----------------------------------------------------------------------------------------------------------------
# format / answer_schema
# ----------------------------------------------------------------------------------------------------------------
def test_format_values():
    ok_ws = "\n <think>a</think>\n\n<answer>{}</answer>  <d_think>b</d_think>\n"
    cases = [
        (PERFECT, 1.0),
        (ok_ws, 1.0),  # whitespace around and between blocks
        (PERFECT.replace("<d_think>", "").replace("</d_think>", ""), 0.0),  # near miss: no d_think
        ("<answer>{}</answer><think>a</think><d_think>b</d_think>", 0.0),  # wrong order
        (PERFECT + " trailing", 0.0),  # text outside the blocks
        (MALFORMED, 1.0),  # the layout holds; the JSON is answer_schema's business
        ("", 0.0),
        (ECHO, 0.0),
        (ECHO_D, 0.0),
    ]
    got = call("format", [c for c, _ in cases])
    assert got == [v for _, v in cases]


def test_answer_schema_values():
    cases = [
        (PERFECT, 1.0),
        (PERFECT.replace("</think>", ""), 1.0),  # format broken, answer still read (official behaviour)
        (comp(bbox=(0, 0, 9)), 0.0),  # 3 numbers
        (PERFECT.replace('"points_2": [6, 6]', '"points_2": [6]'), 0.0),
        (PERFECT.replace("[0, 0, 9, 9]", '["0", 0, 9, 9]'), 0.0),  # a string
        (PERFECT.replace("[0, 0, 9, 9]", "[true, 0, 9, 9]"), 0.0),  # a bool
        (MALFORMED, 0.0),
        (ECHO, 0.0),
    ]
    assert call("answer_schema", [c for c, _ in cases]) == [v for _, v in cases]


def test_conversational_completions_score_like_strings():
    conv = [[{"role": "assistant", "content": c}] for c in (PERFECT, comp(bbox=(5, 5, 14, 14)))]
    strings = [PERFECT, comp(bbox=(5, 5, 14, 14))]
    for name in ("format", "answer_schema", "bbox_iou", "bbox_l1", "points"):
        cols = {"gt_bbox": col(GT_BOX, 2), "gt_points": col(GT_POINTS, 2)}
        assert call(name, conv, **cols) == call(name, strings, **cols), name


# ----------------------------------------------------------------------------------------------------------------
# bbox_iou / bbox_l1 / points
# ----------------------------------------------------------------------------------------------------------------
def test_bbox_iou_values():
    completions = [
        PERFECT,
        comp(bbox=(5, 5, 14, 14)),  # near miss: 25 / 175
        comp(bbox=(4, 4, 10, 10)),  # inter (9-4+1)^2 = 36, union 100 + 49 - 36
        comp(bbox=(9, 9, 20, 20)),  # touching in one pixel: ix1 == ix2 → strict test says 0
        comp(bbox=(50, 50, 60, 60)),  # wrong
        MALFORMED,
        ECHO,
        PERFECT,  # no ground truth
    ]
    gts = col(GT_BOX, 7) + [None]
    got = call("bbox_iou", completions, gt_bbox=gts)
    expected = [1.0, 25 / 175, 36 / 113, 0.0, 0.0, 0.0, 0.0, None]
    assert got[-1] is None
    assert got[:-1] == pytest.approx(expected[:-1], abs=1e-12)


def test_bbox_iou_threshold_option_is_binary():
    completions = [PERFECT, comp(bbox=(1, 1, 9, 9)), comp(bbox=(5, 5, 14, 14))]  # IoU 1, 81/100, 0.143
    got = call("bbox_iou", completions, gt_bbox=col(GT_BOX, 3), options={"threshold": 0.5})
    assert got == [1.0, 1.0, 0.0]


def test_bbox_iou_inverted_or_huge_boxes_stay_in_range():
    completions = [comp(bbox=(9, 0, 0, 9)), comp(bbox=(0, 0, 1e300, 1e300)), comp(bbox=(-1e308, 0, 1e308, 9))]
    got = call("bbox_iou", completions, gt_bbox=col(GT_BOX, 3))
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in got)
    assert got[0] == 0.0


def test_bbox_l1_values():
    completions = [
        PERFECT,
        comp(bbox=(9, 9, 18, 18)),  # mean |Δ| = 9 < 10
        comp(bbox=(10, 10, 19, 19)),  # mean |Δ| = 10, not < 10
        MALFORMED,
        ECHO,
        PERFECT,
    ]
    got = call("bbox_l1", completions, gt_bbox=col(GT_BOX, 5) + [None])
    assert got == [1.0, 1.0, 0.0, 0.0, 0.0, None]
    assert call("bbox_l1", [comp(bbox=(10, 10, 19, 19))], gt_bbox=[GT_BOX], options={"threshold": 10.5}) == [1.0]


def test_points_values():
    big = (0, 0, 300, 300)
    completions = [
        comp(bbox=big, p1=(2, 2), p2=(6, 6)),
        comp(bbox=big, p1=(6, 6), p2=(2, 2)),  # swapped order: order-free
        comp(bbox=(0, 0, 5, 5), p1=(2, 2), p2=(6, 6)),  # p2 outside the predicted bbox
        comp(bbox=(0, 0, 9, 9), p1=(2, 2), p2=(9.9, 9.9)),  # int cast: (9, 9) is inside (inclusive)
        comp(bbox=big, p1=(102, 2), p2=(106, 6)),  # mean distance exactly 100: not < 100
        comp(bbox=big, p1=(101, 2), p2=(105, 6)),  # 99
        MALFORMED,
        ECHO,
        comp(bbox=big),
    ]
    got = call("points", completions, gt_points=col(GT_POINTS, 8) + [None])
    assert got == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, None]
    assert call("points", [completions[4]], gt_points=[GT_POINTS], options={"threshold": 101}) == [1.0]


def test_bad_ground_truth_is_a_clear_error():
    with pytest.raises(ValueError, match=r"bbox_iou.*gt_bbox of row 1"):
        call("bbox_iou", [PERFECT, PERFECT], gt_bbox=[GT_BOX, [1, 2, 3]])
    with pytest.raises(ValueError, match=r"column 'gt_bbox' has 1 values for 2 completions"):
        call("bbox_iou", [PERFECT, PERFECT], gt_bbox=[GT_BOX])


# ----------------------------------------------------------------------------------------------------------------
# mask_iou
# ----------------------------------------------------------------------------------------------------------------
def _gt_mask():
    gt = np.zeros((20, 20), np.uint8)
    gt[0:10, 0:10] = 1
    gt[0:10, 10:20] = 255  # ignore
    return gt


def test_mask_iou_box_decoder_values():
    from PIL import Image

    gt = _gt_mask()
    image = Image.new("RGB", (20, 20))
    completions = [
        comp(bbox=(0, 0, 19, 9)),  # covers target + ignore: ignore excluded → 100/100
        comp(bbox=(5, 5, 14, 14)),  # inter rows 5-9 × cols 5-9 = 25; pred valid = 100 - 25 (ignore) = 75;
        #                              union = 100 + 75 - 25 = 150
        comp(bbox=(0, 10, 9, 19)),  # disjoint from the target
        MALFORMED,
        ECHO,
        PERFECT,
    ]
    from wise_rl.data.schema import mask_to_image

    masks = [mask_to_image(gt)] * 5 + [None]  # PIL L images, as the dataset column holds them
    got = call("mask_iou", completions, gt_mask=masks, image=[image] * 6)
    assert got[:5] == pytest.approx([1.0, 25 / 150, 0.0, 0.0, 0.0])
    assert got[5] is None
    # without an image column the box decoder uses the mask's size
    assert call("mask_iou", completions[:1], gt_mask=[gt])[0] == 1.0


def test_mask_iou_frame_mismatch_and_unknown_decoder():
    from PIL import Image

    with pytest.raises(ValueError, match="not in the same frame"):
        call("mask_iou", [PERFECT], gt_mask=[_gt_mask()], image=[Image.new("RGB", (40, 20))])
    with pytest.raises(ValueError, match="unknown decoder 'sam3'"):
        get_reward("mask_iou", decoder="sam3")


def test_mask_iou_with_tiny_sam2(tmp_path):
    from PIL import Image

    from wise_rl.testbed.fixtures.tiny_sam2 import build_tiny_sam2

    path = build_tiny_sam2(tmp_path / "sam2")
    reward = get_reward("mask_iou", decoder="sam2", decoder_options={"path": str(path), "device": "cpu"})
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    got = reward(prompts=["q"] * 2, completions=[PERFECT, MALFORMED], gt_mask=[_gt_mask()] * 2, image=[image] * 2)
    assert 0.0 <= got[0] <= 1.0 and got[1] == 0.0
    clone = pickle.loads(pickle.dumps(reward))  # after loading: weights are not pickled
    assert clone._scorer._decoder is None
    assert clone(prompts=["q"], completions=[PERFECT], gt_mask=[_gt_mask()], image=[image]) == got[:1]


# ----------------------------------------------------------------------------------------------------------------
# brevity / length_l1_max
# ----------------------------------------------------------------------------------------------------------------
def test_brevity_and_length_values():
    short = comp(concise="red", detailed="one two three four")  # words 1 / 4
    long = comp(concise="a b c d e", detailed="one two three four")  # 5 / 4 → clipped to 0
    broken = short.replace("</think>", "")  # format fails: no rationales to compare
    assert call("brevity", [short, long, broken, ECHO]) == [0.75, 0.0, 0.0, 0.0]
    wrong = comp(bbox=(50, 50, 60, 60), concise="red", detailed="one two three four")
    got = call("length_l1_max", [short, wrong, PERFECT, ECHO], gt_bbox=col(GT_BOX, 3) + [None])
    assert got[0] == pytest.approx(3e-4 * (20 - 1) + 0.5)
    assert got[1:] == [0.0, pytest.approx(3e-4 * (20 - 3) + 0.5), 0.0]  # CONCISE has 3 words; echo → 0
    got = call("length_l1_max", [short], gt_bbox=[GT_BOX], options={"target": 1, "alpha": 0.1, "delta": 0.95})
    assert got == [pytest.approx(0.95)]
    assert call("length_l1_max", [short], gt_bbox=[None]) == [None]
    # gated brevity
    assert call("brevity", [short, wrong], gt_bbox=col(GT_BOX, 2), options={"gate": "bbox_iou"}) == [0.75, 0.0]
    # only brevity may go ungated: the other two reward *correct* compression
    for name in ("self_distillation", "length_l1_max"):
        with pytest.raises(ValueError, match=f"{name} needs a gate"):
            get_reward(name, gate=None)
    assert get_reward("length_l1_max", gate="mask_iou").options()["gate"] == "mask_iou"


def test_token_counts_use_the_tokenizer_option():
    from transformers import AutoTokenizer

    from rewards.distillation import default_embedding_folder

    tok = AutoTokenizer.from_pretrained(default_embedding_folder())
    n_c = len(tok("red", add_special_tokens=False)["input_ids"])
    n_d = len(tok("unbelievably complicated explanation", add_special_tokens=False)["input_ids"])
    c = comp(concise="red", detailed="unbelievably complicated explanation")
    assert call("brevity", [c], options={"tokenizer": tok}) == [pytest.approx(max(0, 1 - n_c / n_d))]
    # a folder works as well as an object
    assert call("brevity", [c], options={"tokenizer": default_embedding_folder()}) == [
        pytest.approx(max(0, 1 - n_c / n_d))
    ]


# ----------------------------------------------------------------------------------------------------------------
# self_distillation with the real all-MiniLM-L6-v2
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def distill():
    return get_reward("self_distillation", device="cpu")


def test_self_distillation_equals_cos_times_brevity(distill):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import cos_sim

    from rewards.distillation import default_embedding_folder

    model = SentenceTransformer(default_embedding_folder(), device="cpu")
    e_c, e_d = model.encode(CONCISE), model.encode(DETAILED)
    n_c, n_d = len(CONCISE.split()), len(DETAILED.split())  # no tokenizer given: whitespace words
    expected = float(cos_sim(e_d, e_c)) * max(0.0, 1 - n_c / n_d)
    logged = {}
    got = distill(
        prompts=["q"] * 5,
        completions=[PERFECT, comp(bbox=(5, 5, 14, 14)), MALFORMED, ECHO, PERFECT],
        gt_bbox=col(GT_BOX, 4) + [None],
        log_metric=logged.__setitem__,
    )
    assert got[0] == pytest.approx(expected, abs=1e-5)
    assert 0.0 < got[0] < 1.0
    assert got[1:] == [0.0, 0.0, 0.0, None]  # gate closed (IoU 0.14), malformed, echo, no ground truth
    assert logged["self_distillation/gate_pass_rate"] == pytest.approx(1 / 4)
    # well-formed rows: PERFECT, near miss, MALFORMED (layout holds; concise "the red square", detailed "x"), PERFECT
    assert logged["self_distillation/concise_tokens_mean"] == n_c
    assert logged["self_distillation/detailed_tokens_mean"] == pytest.approx((3 * n_d + 1) / 4)


def test_self_distillation_encodes_once_per_batch_deduplicated(distill, monkeypatch):
    model = distill.embedder.model()
    calls = []
    original = model.encode

    def counting(texts, *args, **kwargs):
        calls.append(list(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode", counting)
    other = comp(concise="red square", detailed="another long explanation of why the red square is the answer")
    batch = [PERFECT, other, PERFECT, other, PERFECT, comp(bbox=(50, 50, 60, 60), concise="never encoded")]
    got = distill(prompts=["q"] * 6, completions=batch, gt_bbox=col(GT_BOX, 6))
    assert len(calls) == 1
    assert sorted(calls[0]) == sorted([CONCISE, DETAILED, "red square", other.split("<d_think>")[1][:-10]])
    assert got[0] == got[2] == got[4] and got[1] == got[3] and got[5] == 0.0
    calls.clear()
    distill(prompts=["q"], completions=[comp(bbox=(50, 50, 60, 60))], gt_bbox=[GT_BOX])
    assert calls == []  # nothing passes the gate: no encode at all


def test_self_distillation_mask_gate():
    gt = np.zeros((20, 20), np.uint8)
    gt[0:10, 0:10] = 1
    reward = get_reward("self_distillation", gate="mask_iou", gate_threshold=0.9, device="cpu")
    reward.embedder.encode = lambda texts: np.eye(len(texts), 4, dtype=np.float32)  # no model needed here
    got = reward(prompts=["q"] * 3, completions=[PERFECT, comp(bbox=(0, 0, 9, 8)), PERFECT],
                 gt_mask=[gt, gt, None])
    assert got == [0.0, 0.0, None]  # PERFECT passes (IoU 1) but orthogonal fake embeddings give cos 0
    reward.embedder.encode = lambda texts: np.ones((len(texts), 4), dtype=np.float32) / 2
    got = reward(prompts=["q"] * 2, completions=[PERFECT, comp(bbox=(0, 0, 9, 8))], gt_mask=[gt, gt])
    assert got[0] == pytest.approx(1 - len(CONCISE.split()) / len(DETAILED.split())) and got[1] == 0.0


# ----------------------------------------------------------------------------------------------------------------
# registry, options, pickling, plug-ins
# ----------------------------------------------------------------------------------------------------------------
def test_available_rewards_and_names():
    names = available_rewards()
    for name in ("format", "answer_schema", "bbox_iou", "bbox_l1", "points", "mask_iou", "self_distillation",
                 "brevity", "length_l1_max"):
        assert name in names
        assert get_reward(name).__name__ == name  # TRL logs rewards/<name>/mean


def test_unknown_name_and_bad_options():
    with pytest.raises(ValueError, match=r"unknown reward 'nope'; known: .*bbox_iou.*format"):
        get_reward("nope")
    with pytest.raises(TypeError, match=r"reward 'bbox_l1' got unknown option\(s\) treshold; allowed: threshold"):
        get_reward("bbox_l1", treshold=3)
    with pytest.raises(TypeError, match=r"reward 'format' got unknown option\(s\) x; allowed: \(none\)"):
        get_reward("format", x=1)
    with pytest.raises(ValueError, match="unknown gate"):
        get_reward("self_distillation", gate="accuracy")
    with pytest.raises(ValueError, match="options given for rewards not in the list: points"):
        get_rewards(["format"], {"points": {"threshold": 1}})


def test_every_reward_pickles_before_and_after_use(distill):
    cols = {"gt_bbox": [GT_BOX], "gt_points": [GT_POINTS], "gt_mask": [None]}
    for name in available_rewards():
        reward = distill if name == "self_distillation" else get_reward(name)
        before = pickle.loads(pickle.dumps(reward))
        value = reward(prompts=["q"], completions=[PERFECT], **cols)
        after = pickle.loads(pickle.dumps(reward))
        assert after.__name__ == before.__name__ == name
        if name == "self_distillation":
            assert reward.embedder._model is not None and after.embedder._model is None
        again = after(prompts=["q"], completions=[PERFECT], **cols)
        assert [v is None for v in again] == [v is None for v in value], name
        assert [v for v in again if v is not None] == pytest.approx([v for v in value if v is not None]), name


def test_dotted_path_plugin(tmp_path, monkeypatch):
    pkg = tmp_path / f"myrewards_{uuid.uuid4().hex[:8]}"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent("""
        def exclaim(prompts, completions, bonus=1.0, **kwargs):
            return [bonus if "!" in c else 0.0 for c in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    reward = get_reward(f"{pkg.name}.mod:exclaim", bonus=2.0)
    assert reward.__name__ == "exclaim"
    assert reward(prompts=["q", "q"], completions=["hi!", "hi"]) == [2.0, 0.0]
    assert pickle.loads(pickle.dumps(reward))(prompts=["q"], completions=["!"]) == [2.0]
    with pytest.raises(TypeError, match="allowed: bonus"):
        get_reward(f"{pkg.name}.mod:exclaim", malus=1)
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        get_reward(f"{pkg.name}.mod:missing")


def test_env_var_module_registers(tmp_path, monkeypatch):
    name = f"userrewards_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from rewards import register_reward

        @register_reward("{name}_len")
        def length(prompts, completions, **kwargs):
            return [float(len(c)) for c in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(rewards.ENV_MODULES, name)
    try:
        assert f"{name}_len" in available_rewards()
        reward = get_reward(f"{name}_len")
        assert reward(prompts=["q"], completions=["abc"]) == [3.0]
    finally:
        rewards._REGISTRY.pop(f"{name}_len", None)
        sys.modules.pop(name, None)


def test_module_dropped_into_the_package_registers():
    name = f"zz_dropin_{uuid.uuid4().hex[:8]}"
    path = Path(rewards.__file__).parent / f"{name}.py"
    path.write_text(textwrap.dedent(f"""
        from rewards import register_reward
        from rewards._base import Reward

        @register_reward("{name}")
        class Shouty(Reward):
            name = "{name}"

            def __init__(self, scale: float = 1.0):
                super().__init__()
                self.scale = scale

            def score(self, parsed, columns, log_metric=None):
                return [self.scale * p.text.count("!") for p in parsed]
    """))
    try:
        assert name in available_rewards()
        reward = get_reward(name, scale=0.5)
        assert reward.__name__ == name
        assert reward(prompts=["q", "q"], completions=["a!!", ECHO + "!"]) == [1.0, 0.0]  # echo guard inherited
    finally:
        path.unlink()
        rewards._REGISTRY.pop(name, None)
        sys.modules.pop(f"rewards.{name}", None)


def test_register_reward_rejects_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):

        @register_reward("bbox_iou")
        def impostor(prompts, completions, **kwargs):
            return [0.0] * len(completions)


def test_parse_is_shared_across_rewards():
    from rewards._parse import cache_info, clear_cache

    clear_cache()
    text = comp(concise=f"unique {uuid.uuid4().hex}")
    for name in ("format", "answer_schema", "bbox_iou", "bbox_l1", "points"):
        call(name, [text, text], gt_bbox=col(GT_BOX, 2), gt_points=col(GT_POINTS, 2))
    info = cache_info()
    assert info.misses == 1 and info.hits == 9


def test_wise_rewards_helper_builds_the_official_set():
    funcs = rewards.wise_rewards(tokenizer=None, device="cpu")
    assert [f.__name__ for f in funcs] == list(rewards.WISE_REWARDS)
    assert funcs[-1].embedder.device == "cpu"
    values = [f(prompts=["q"], completions=[PERFECT], gt_bbox=[GT_BOX], gt_points=[GT_POINTS])[0] for f in funcs[:-1]]
    assert values == [1.0, 1.0, 1.0, 1.0, 1.0]  # format, schema, IoU, L1, points on the perfect answer


@pytest.mark.parametrize("module", ["rewards", "rewards._parse", "rewards.format", "rewards.answer_schema",
                                    "rewards.geometry", "rewards.mask_iou", "rewards.distillation", "rewards.length",
                                    "wise_rl.masks", "wise_rl.metrics"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


def test_bench_rewards_smoke(tmp_path):
    """The benchmark runs, checks the two implementations agree, and rewrites (not duplicates) its doc section."""
    from wise_rl.testbed.bench import BENCHES, make_reward_batch, write_section

    batch = make_reward_batch(n_prompts=2, n_samples=4, seed=1)
    assert len(batch["completions"]) == 8 and len(batch["gt_bbox"]) == 8
    doc = tmp_path / "benchmarks.md"
    write_section("Other", "kept", doc)
    result = BENCHES["rewards"](device="cpu", repeats=1, n_prompts=2, n_samples=4, seed=1, write=doc)
    assert result["max_abs_diff"] < 1e-4 and result["ours_ms"] > 0 and result["encode_calls_per_batch"] <= 1
    BENCHES["rewards"](device="cpu", repeats=1, n_prompts=2, n_samples=4, seed=1, write=doc)
    text = doc.read_text()
    assert text.count("## Rewards") == 1 and "## Other\n\nkept" in text and "Speed-up" in text
