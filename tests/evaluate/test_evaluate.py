"""``wise-rl eval`` end to end on the tiny model: prompts, stop strings, resume, shard + merge, SAM2, compare."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from wise_rl import evaluate, formats, metrics
from wise_rl.cli import main
from wise_rl.data.loaders import load_source
from wise_rl.data.schema import as_mask_array
from wise_rl.masks import rasterize_bbox

# keys that legitimately differ between two runs of the same samples
TIMING = {"latency_s"}
METRIC_TIMING = {"latency_mean_s", "samples_per_s", "settings"}


@pytest.fixture(scope="module")
def rows(shapeworld_dir):
    return load_source(str(shapeworld_dir), split="test", with_original_mask=True, limit=8)


@pytest.fixture(scope="module")
def noisy(tiny_model_dir):
    """The tiny model with its weights perturbed so that greedy text differs between samples."""
    from wise_rl.models import load_model, load_processor

    processor = load_processor(tiny_model_dir)
    model = load_model(tiny_model_dir).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return model, processor


def _samples(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def _strip(records, drop=TIMING):
    return {r["id"]: {k: v for k, v in r.items() if k not in drop} for r in records}


@pytest.mark.parametrize("prompt", ["wise", "wise-s", "verbose"])
def test_eval_cli_end_to_end_each_prompt(tmp_path, tiny_model_dir, shapeworld_dir, prompt, capsys):
    out = tmp_path / prompt
    assert main(["eval", "--model", str(tiny_model_dir), "--dataset", str(shapeworld_dir), "--split", "test",
                 "--prompt", prompt, "--out", str(out), "--limit", "6", "--batch-size", "4",
                 "--max-new-tokens", "12", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "gIoU %" in printed and "think tokens mean" in printed
    recs = _samples(out)
    assert len(recs) == 6 and len({r["id"] for r in recs}) == 6
    for r in recs:
        for key in ("id", "completion", "answer", "concise", "think_tokens", "completion_tokens", "latency_s",
                    "intersection", "union", "iou", "failure"):
            assert key in r, key
        assert 1 <= r["completion_tokens"] <= 12 and r["latency_s"] > 0
        assert formats.ANSWER_CLOSE not in r["completion"] or r["completion"].endswith(formats.ANSWER_CLOSE)
        # a random model does not answer: every sample is a counted failure with U = |target|
        assert r["failure"] is not None and r["union"] == r["target_pixels"] > 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and m["n_failed"] == 6 and m["gIoU"] == 0.0 and m["protocol"] == "lisa"
    assert m["settings"]["prompt"] == prompt and m["settings"]["model_size"] == 112
    assert m["completion_tokens_mean"] == pytest.approx(np.mean([r["completion_tokens"] for r in recs]))
    assert m["samples_per_s"] == pytest.approx(1 / np.mean([r["latency_s"] for r in recs]))


def test_generation_stops_each_row_right_after_the_stop_string(noisy, rows):
    model, processor = noisy
    images, queries = [r["image"] for r in rows][:4], [r["query"] for r in rows][:4]
    full = [g.completion for g in evaluate.HFGenerator(model, processor, "wise", 24, stop=None)(images, queries)]
    assert len(set(full)) > 1
    # a stop string found in some rows (at different places) but not necessarily all
    words = [w for w in full[0].split(" ") if len(w) >= 3]
    stop = " " + words[len(words) // 2]
    gens = evaluate.HFGenerator(model, processor, "wise", 24, stop=stop)(images, queries)
    stopped_rows = 0
    for text, gen in zip(full, gens):
        k = text.find(stop)
        if k >= 0:
            stopped_rows += 1
            assert gen.completion == text[: k + len(stop)]
            assert gen.completion_tokens < 24
        else:
            assert gen.completion == text and gen.completion_tokens == 24
    assert stopped_rows >= 1


def test_cut_at_stop_and_think_text():
    assert evaluate.cut_at_stop("<think>a</think><answer>{}</answer><d_think>x", "</answer>") == \
        "<think>a</think><answer>{}</answer>"
    assert evaluate.cut_at_stop("no stop", "</answer>") == "no stop"
    assert evaluate.think_text("<think> red one </think><answer>") == "red one"
    assert evaluate.think_text("<think>truncated thinking") == "truncated thinking"
    assert evaluate.think_text("<answer>{}</answer>") == ""
    # an unclosed <think> ends where the answer (or the detailed part) starts: the answer is not thinking
    assert evaluate.think_text("<think>red one <answer>{}</answer>") == "red one"
    assert evaluate.think_text("<think>red one<d_think>more") == "red one"
    # no <think> block where the prompt asks for one: not measured (None), not 0 tokens
    assert evaluate.measured_think("<answer>{}</answer>", "verbose") is None
    assert evaluate.measured_think("<answer>{}</answer>", "answer-only") == ""
    assert evaluate.measured_think("<think>a b</think><answer>{}</answer>", "wise") == "a b"
    assert evaluate.parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError, match="i/n"):
        evaluate.parse_shard("3/3")
    assert [list(evaluate.shard_slice(7, (i, 3))) for i in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]


def test_think_cost_counts_only_measured_samples(tmp_path, rows, shapeworld_dir):
    """Half the completions lost their <think> block: the think mean is over the other half, and every table
    says on how many samples it was measured."""
    completions = [_gt_completion(r, think="one two three") if i % 2 == 0 else _gt_completion(r).split(
        formats.THINK_CLOSE)[1] for i, r in enumerate(rows)]
    tok = type("Words", (), {"__call__": lambda self, t, add_special_tokens=False: {"input_ids": t.split()}})()
    config = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), split="test", prompt="verbose",
                                 limit=len(rows))
    m = evaluate.run_eval(config, tmp_path / "o", generator=Scripted(completions), tokenizer=tok, dataset=rows,
                          progress=False)
    assert m["think_tokens_n"] == len(rows) // 2 and m["think_tokens_mean"] == 3.0
    note = f"measured on {len(rows) // 2} of {len(rows)} samples"
    assert note in evaluate.format_table(m)
    assert f"note: think tokens of o {note}" in evaluate.compare_table(m, m, this_name="o", other_name="p")


class Scripted:
    """A generator that returns given completions in dataset order (and counts its calls)."""

    def __init__(self, completions):
        self.completions, self.k, self.calls = list(completions), 0, 0

    def __call__(self, images, queries):
        self.calls += 1
        out = [evaluate.Generation(c, 7, 0.01) for c in self.completions[self.k : self.k + len(images)]]
        self.k += len(images)
        return out


def _gt_completion(row, think="the one"):
    """What a perfect WISE model emits at inference for ``row``: concise think + the ground-truth answer."""
    bbox, (p1, p2) = row["gt_bbox"], row["gt_points"]
    answer = formats.answer_json(formats.answer_dict(bbox, [p1, p2]))
    return f"{formats.THINK_OPEN}{think}{formats.THINK_CLOSE}{formats.ANSWER_OPEN}{answer}{formats.ANSWER_CLOSE}"


def test_eval_scores_known_answers(tmp_path, rows, shapeworld_dir):
    completions = [_gt_completion(r) for r in rows]
    completions[3] = "<think>hm</think><answer>{\"bbox\": [1, 2]}</answer>"  # wrong schema
    cfg = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), split="test", prompt="wise",
                              batch_size=3, limit=8)
    m = evaluate.run_eval(cfg, tmp_path / "a", generator=Scripted(completions), dataset=rows, progress=False)
    recs = {r["id"]: r for r in _samples(tmp_path / "a")}
    ious = []
    for k, row in enumerate(rows):
        rec = recs[row["id"]]
        gt = as_mask_array(row["original_mask"])
        if k == 3:
            assert rec["failure"] == "answer_schema" and rec["union"] == int((gt == 1).sum())
            ious.append(0.0)
            continue
        expected = metrics.sample_iou(rasterize_bbox(row["gt_bbox"], tuple(row["image_size"])), gt)
        assert (rec["intersection"], rec["union"]) == expected[:2]
        assert rec["concise"] == "the one" and rec["format_ok"]
        ious.append(expected[2])
    assert m["gIoU"] == pytest.approx(np.mean(ious))
    assert 0.4 < m["gIoU"] < 1.0  # a shape's own box covers it, plus some background
    assert m["failures"] == {"answer_schema": 1} and m["n"] == 8


def test_killed_and_rerun_eval_skips_finished_ids_and_gives_identical_metrics(tmp_path, noisy, rows,
                                                                              shapeworld_dir):
    model, processor = noisy
    cfg = evaluate.EvalConfig(model="noisy", dataset=str(shapeworld_dir), split="test", prompt="wise",
                              batch_size=3, max_new_tokens=16, limit=8)

    def gen():
        return evaluate.HFGenerator(model, processor, "wise", 16)

    full = evaluate.run_eval(cfg, tmp_path / "full", generator=gen(), tokenizer=processor.tokenizer, dataset=rows,
                             progress=False)
    # "kill" the run: keep the first 4 lines and half of the 5th
    shutil.copytree(tmp_path / "full", tmp_path / "killed")
    lines = (tmp_path / "full" / "samples.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "killed" / "samples.jsonl").write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    (tmp_path / "killed" / "metrics.json").unlink()

    class Counting:
        def __init__(self, inner):
            self.inner, self.prompts = inner, 0

        def __call__(self, images, queries):
            self.prompts += len(images)
            return self.inner(images, queries)

    counting = Counting(gen())
    resumed = evaluate.run_eval(cfg, tmp_path / "killed", generator=counting, tokenizer=processor.tokenizer,
                                dataset=rows, progress=False)
    # batches [0,1,2] done → skipped; [3,4,5] partly done → regenerated whole; [6,7] → generated
    assert counting.prompts == 5
    recs = _samples(tmp_path / "killed")
    assert len(recs) == 8 and len({r["id"] for r in recs}) == 8
    assert _strip(recs) == _strip(_samples(tmp_path / "full"))
    assert {k: v for k, v in resumed.items() if k not in METRIC_TIMING} == \
        {k: v for k, v in full.items() if k not in METRIC_TIMING}
    # a resume with different settings is refused
    other = evaluate.EvalConfig(**{**cfg.__dict__, "prompt": "verbose"})
    with pytest.raises(evaluate.EvalError, match="prompt='wise'"):
        evaluate.run_eval(other, tmp_path / "killed", generator=gen(), dataset=rows, progress=False)


def test_shards_merged_equal_the_unsharded_run(tmp_path, noisy, rows, shapeworld_dir):
    model, processor = noisy
    base = dict(model="noisy", dataset=str(shapeworld_dir), split="test", prompt="wise-s", batch_size=2,
                max_new_tokens=12, limit=8)
    kw = dict(tokenizer=processor.tokenizer, dataset=rows, progress=False)
    full = evaluate.run_eval(evaluate.EvalConfig(**base), tmp_path / "full",
                             generator=evaluate.HFGenerator(model, processor, "wise-s", 12), **kw)
    for i in range(2):
        evaluate.run_eval(evaluate.EvalConfig(**base, shard=f"{i}/2"), tmp_path / f"s{i}",
                          generator=evaluate.HFGenerator(model, processor, "wise-s", 12), **kw)
    assert len(_samples(tmp_path / "s0")) == 4 and len(_samples(tmp_path / "s1")) == 4
    assert main(["eval", "--merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out",
                 str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    assert _strip(_samples(tmp_path / "merged")) == _strip(_samples(tmp_path / "full"))
    assert {k: v for k, v in merged.items() if k not in METRIC_TIMING} == \
        {k: v for k, v in full.items() if k not in METRIC_TIMING}
    # merging only one shard: the other half is missing, counted as failures
    evaluate.merge_runs([tmp_path / "s0"], tmp_path / "half")
    half = json.loads((tmp_path / "half" / "metrics.json").read_text())
    assert half["n"] == 4  # shard 0's ids only: its run.json lists them
    # the same id with a different result in two shards is an error
    shutil.copytree(tmp_path / "s0", tmp_path / "s0b")
    recs = _samples(tmp_path / "s0b")
    recs[0]["completion"] += "x"
    (tmp_path / "s0b" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(evaluate.EvalError, match="two shards with different completion"):
        evaluate.merge_runs([tmp_path / "s0", tmp_path / "s0b"], tmp_path / "bad")


def test_read_samples_ignores_only_a_half_written_last_line(tmp_path):
    p = tmp_path / "samples.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "compl')
    assert [r["id"] for r in evaluate.read_samples(p)] == ["a", "b"]
    p.write_text('{"id": "a"}\n{"id": "b", "x\n{"id": "c"}\n')
    with pytest.raises(evaluate.EvalError, match="line 2"):
        evaluate.read_samples(p)


def test_sam2_decoder_path(tmp_path, rows, shapeworld_dir):
    from wise_rl.masks import Sam2Decoder
    from wise_rl.testbed.fixtures.tiny_sam2 import build_tiny_sam2

    sam2 = build_tiny_sam2(tmp_path / "sam2", seed=0)
    sub = rows.select(range(3))
    completions = [_gt_completion(r) for r in sub]
    cfg = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), prompt="wise", batch_size=3,
                              mask_decoder="sam2", sam2=str(sam2))
    m = evaluate.run_eval(cfg, tmp_path / "out", generator=Scripted(completions), dataset=sub, progress=False)
    recs = {r["id"]: r for r in _samples(tmp_path / "out")}
    decoder = Sam2Decoder(sam2)
    for row in sub:
        answer = formats.parse_for_prompt(_gt_completion(row), "wise").answer
        pred = decoder.decode(row["image"].convert("RGB"), answer)  # ShapeWorld: model frame = original
        expected = metrics.sample_iou(pred, as_mask_array(row["original_mask"]))
        assert (recs[row["id"]]["intersection"], recs[row["id"]]["union"]) == expected[:2]
        assert recs[row["id"]]["failure"] is None
    assert m["n"] == 3 and m["settings"]["mask_decoder"] == "sam2"
    with pytest.raises(ValueError, match="--sam2 DIR"):
        evaluate.make_decoder("sam2", None)


def test_compare_prints_ratios_and_deltas(tmp_path, rows, shapeworld_dir, capsys):
    for name, think in (("short", "red"), ("long", "the red circle is the largest shape on the left")):
        comps = [_gt_completion(r, think) for r in rows]
        cfg = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), prompt="wise", batch_size=4)
        evaluate.run_eval(cfg, tmp_path / name, generator=Scripted(comps), dataset=rows, progress=False,
                          tokenizer=_WordTokenizer())
    a, b = evaluate.load_metrics(tmp_path / "short"), evaluate.load_metrics(tmp_path / "long")
    assert a["think_tokens_mean"] == 1 and b["think_tokens_mean"] == 10
    table = evaluate.compare_table(a, b, "short", "long")
    assert "0.10×" in table  # think tokens ratio 1/10
    assert "Δ +0.00 pts" in table  # same answers, same gIoU


class _WordTokenizer:
    """Counts whitespace words (stands in for the policy tokenizer)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def test_eval_prompt_text_matches_trl_training_format(tiny_model_dir):
    """The eval prompt is rendered exactly as TRL renders a conversational training prompt with an image."""
    from PIL import Image
    from trl.data_utils import prepare_multimodal_messages

    from wise_rl.models import load_processor

    processor = load_processor(tiny_model_dir)
    text = formats.render_prompt("wise", "The red circle.")
    trl_text = processor.apply_chat_template(
        prepare_multimodal_messages([{"role": "user", "content": text}], images=[Image.new("RGB", (112, 112))]),
        add_generation_prompt=True, tokenize=False)
    ours = processor.apply_chat_template(evaluate.chat_messages(text), add_generation_prompt=True, tokenize=False)
    assert ours == trl_text and "<|image_pad|>" in ours
