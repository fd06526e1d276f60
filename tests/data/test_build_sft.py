"""``wise-rl build-sft``: extractive compression under MiniLM and self-exploration filtering by IoU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wise_rl import formats
from wise_rl.data.sft import best_exploration, build_explored, compress_rationale, split_sentences


def test_split_sentences():
    assert split_sentences("One here. Two? Three!  Four at y 3.5 px.") == ["One here.", "Two?", "Three!",
                                                                           "Four at y 3.5 px."]


def _fake_encoder(vectors):
    def encode(texts):
        out = np.array([vectors[t] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
    return encode


def test_compress_picks_the_sentence_closest_to_the_whole_within_the_budget():
    s1, s2, s3 = "There are three shapes.", "The red circle is the largest one.", "It is on the left."
    whole = f"{s1} {s2} {s3}"
    enc = _fake_encoder({whole: [1, 1, 0], s1: [0, 1, 1], s2: [1, 0.9, 0], s3: [1, 0, 1]})
    assert compress_rationale(whole, enc, budget=32) == s2
    # two sentences allowed: the next best joins, in the original order
    assert compress_rationale(whole, enc, budget=32, max_sentences=2) == f"{s1} {s2}"
    # the budget (words here) bounds the total: the best sentence alone is 7 words
    assert compress_rationale(whole, enc, budget=8, max_sentences=3) == s2
    # a best sentence longer than the budget is cut to its first tokens
    assert compress_rationale(whole, enc, budget=3) == "The red circle"
    with pytest.raises(ValueError, match="empty"):
        compress_rationale("  ", enc)


def test_build_sft_compress_with_minilm(shapeworld_dir, tmp_path):
    from datasets import load_from_disk

    from wise_rl.cli import main as cli
    from wise_rl.data.loaders import load_source

    src = load_source(str(shapeworld_dir), split="train", limit=4)
    stripped = src.map(lambda r: {"concise": None})
    stripped.save_to_disk(str(tmp_path / "src"))
    out = tmp_path / "out"
    assert cli(["build-sft", "--mode", "compress", "--source", str(tmp_path / "src"), "--out", str(out),
                "--budget", "24"]) == 0
    built = load_from_disk(str(out))
    assert len(built) == 4 and built.features == src.features
    for row in built:
        sentences = split_sentences(row["detailed"])
        assert row["concise"] in sentences or any(s.startswith(row["concise"]) for s in sentences)
        assert 0 < len(row["concise"].split()) <= 24
    report = json.loads((out / "build_report.json").read_text())
    assert report["compressed"] == 4 and report["rows_out"] == 4


def _verbose(bbox, reasoning="The red one is biggest. It sits left."):
    return formats.build_target("", formats.answer_dict(bbox, [[1, 1], [2, 2]]), reasoning, "verbose")


def test_best_exploration_keeps_the_best_sample_above_tau():
    gt = [10, 10, 29, 29]
    samples = ["garbage", _verbose([10, 10, 29, 29], "Exact. Right."), _verbose([0, 0, 19, 19], "Off.")]
    text, iou = best_exploration(samples, gt, tau=0.5)
    assert text == "Exact. Right." and iou == pytest.approx(1.0)
    text, iou = best_exploration([_verbose([0, 0, 19, 19])], gt, tau=0.5)
    assert text is None and iou == pytest.approx(100 / 700)  # 10×10 overlap over 400 + 400 − 100


def test_build_explored_with_a_stub_sampler(shapeworld_dir, tiny_model_dir):
    from wise_rl.data.loaders import load_source

    ds = load_source(str(shapeworld_dir), split="train", limit=3)
    first_id = ds[0]["id"]

    def sampler(row):  # row 0 gets a perfect box, the others miss
        box = row["gt_bbox"] if row["id"] == first_id else [0, 0, 1, 1]
        return [_verbose(box, "Compare the shapes. The target is the one asked for."), "no tags"]

    report = {}
    built = build_explored(ds, tiny_model_dir, k=2, tau=0.5, report=report, sampler=sampler)
    assert len(built) == 1 and built[0]["id"] == first_id
    assert built[0]["detailed"] == "Compare the shapes. The target is the one asked for."
    assert built[0]["concise"] in split_sentences(built[0]["detailed"])
    assert report["kept"] == 1 and report["skipped_below_tau"] == 2
    # 3 rows × 2 samples: every verbose one parses, every "no tags" one is counted by its reason
    assert report["samples"] == 6 and report["parsed"] == 3 and sum(report["parse_failures"].values()) == 3


def test_explore_with_no_row_above_tau_is_one_clear_error(shapeworld_dir, tiny_model_dir):
    from wise_rl.data.loaders import load_source
    from wise_rl.errors import UsageError

    ds = load_source(str(shapeworld_dir), split="train", limit=2)
    with pytest.raises(UsageError) as info:
        build_explored(ds, tiny_model_dir, k=2, tau=0.5, sampler=lambda row: ["no tags", "<think>x</think>"])
    msg = str(info.value)
    assert "no row reached IoU ≥ 0.5 in 2 samples per row (2 rows, 4 samples: 0 parsed" in msg
    assert "lower --tau, raise --k" in msg and "\n" not in msg
