"""Honest eval figures: metrics.json records the threads and CPU beside the latency, the summary counts samples that
ran to --max-new-tokens, and a think cost that was not measured says the real reason."""

from __future__ import annotations

import pytest
import torch

from wise_rl import evaluate, formats
from wise_rl.data.loaders import load_source
from wise_rl.training.precision import cpu_model


@pytest.fixture(scope="module")
def rows(shapeworld_dir):
    return load_source(str(shapeworld_dir), split="test", limit=4)


class Fixed:
    """A generator returning the same completion with given token counts, in dataset order."""

    def __init__(self, completion, tokens):
        self.completion, self.tokens, self.k = completion, list(tokens), 0

    def __call__(self, images, queries):
        out = [evaluate.Generation(self.completion, t, 0.01) for t in self.tokens[self.k:self.k + len(images)]]
        self.k += len(images)
        return out


def test_metrics_record_threads_cpu_and_the_samples_that_hit_the_token_limit(tmp_path, rows, shapeworld_dir, caplog):
    completion = "<think>red one</think><answer>{\"bbox\": [1, 2, 3, 4]"  # cut: never closed
    cfg = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), split="test", prompt="wise",
                              batch_size=2, limit=4, max_new_tokens=32)
    with caplog.at_level("WARNING"):
        m = evaluate.run_eval(cfg, tmp_path / "o", generator=Fixed(completion, [32, 12, 32, 40]), dataset=rows,
                              progress=False)
    assert m["n_hit_token_limit"] == 3 and m["max_new_tokens"] == 32
    assert "3 of 4 samples hit --max-new-tokens 32" in caplog.text
    assert m["machine"]["threads"] == torch.get_num_threads() and m["machine"]["cpu_model"] == cpu_model()
    table = evaluate.format_table(m)
    assert "3 of 4 samples (--max-new-tokens 32" in table
    assert f"({torch.get_num_threads()} thread" in table and cpu_model() in table


def test_a_think_cost_without_a_tokenizer_says_so_not_that_the_blocks_are_missing(tmp_path, rows, shapeworld_dir):
    bbox = formats.answer_json(formats.answer_dict(rows[0]["gt_bbox"], rows[0]["gt_points"]))
    completion = f"<think>red one</think><answer>{bbox}</answer>"
    cfg = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), split="test", prompt="wise", limit=4)
    m = evaluate.run_eval(cfg, tmp_path / "o", generator=Fixed(completion, [9] * 4), tokenizer=None, dataset=rows,
                          progress=False)
    assert m["think_tokens_n"] == 0 and m["think_blocks_n"] == 4
    note = evaluate.think_cost_note(m)
    assert note.startswith("not measured: no tokenizer") and "4 of 4 samples have a <think> block" in note
    assert evaluate.think_cost_note({"n": 4, "think_tokens_n": 0, "think_blocks_n": 0}) == (
        "not measured: no <think> block in any of the 4 samples")
