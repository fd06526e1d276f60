"""Guard against train/inference mismatches at the prompt/completion boundary.

A model trained (through the pre-training path: ``trl.SFTTrainer`` + TRL's VLM collator on prompt–completion rows)
on two targets must reproduce one of them EXACTLY under greedy generation through the eval path
(``wise_rl.evaluate.HFGenerator``). If training tokenised ``prompt + target`` as one string while generation
tokenises the prompt alone, the first completion token seen at inference would never have been trained, and the
memorised target would not come back. The fast tests check the same boundary token by token without training.
"""

from __future__ import annotations

import pytest
import torch

from wise_rl import formats


@pytest.fixture(scope="module")
def samples():
    from wise_rl.testbed.shapeworld import sample_at

    return [sample_at(0, "train", i) for i in range(2)]


def _collate(processor, rows):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    return collator([dict(r) for r in rows])


def test_pretrain_rows_match_sft_rows(samples):
    """pretrain_row builds the row the SFT recipe's sft_rows builds for prompt 'answer-only', target 'answer'."""
    from datasets import Dataset

    from wise_rl.testbed.pretrain.rows import pretrain_row
    from wise_rl.training import sft_rows

    ds = Dataset.from_list([{"id": f"r{i}", "query": s["query"], "gt_bbox": s["gt_bbox"],
                             "gt_points": s["gt_points"]} for i, s in enumerate(samples)])
    expected = sft_rows(ds, "answer-only", "answer")
    for s, e in zip(samples, expected):
        row = pretrain_row(s)
        assert row["prompt"] == e["prompt"]
        assert row["completion"] == e["completion"]
        assert row["completion"][0]["content"].startswith("<answer>{\"bbox\": [")


def test_collated_prompt_is_the_generation_prompt(tiny_model_dir, samples):
    """The trained prompt tokens are exactly the tokens HFGenerator feeds, and the labelled tokens are exactly the
    separately tokenised target + end of turn."""
    from wise_rl.evaluate import HFGenerator
    from wise_rl.models import load_model, load_processor
    from wise_rl.testbed.pretrain.rows import pretrain_row

    processor = load_processor(tiny_model_dir)
    rows = [pretrain_row(s) for s in samples]
    batch = _collate(processor, rows)
    gen = HFGenerator(load_model(tiny_model_dir), load_processor(tiny_model_dir), "answer-only")
    tok = processor.tokenizer
    for k, s in enumerate(samples):
        ids = batch["input_ids"][k][batch["attention_mask"][k].bool()].tolist()
        labels = batch["labels"][k][batch["attention_mask"][k].bool()].tolist()
        n_prompt = sum(1 for v in labels if v == -100)
        assert all(v == -100 for v in labels[:n_prompt]), "labels must cover one contiguous completion"
        inference = gen.processor(text=gen.prompt_texts([s["query"]]), images=[s["image"]], return_tensors="pt")
        assert ids[:n_prompt] == inference["input_ids"][0].tolist()
        target = rows[k]["completion"][0]["content"]
        expected_completion = tok(target + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        assert labels[n_prompt:] == expected_completion == ids[n_prompt:]
        assert tok.decode(ids[n_prompt:]).startswith(target)


@pytest.mark.slow
def test_memorised_target_is_reproduced_by_greedy_eval_generation(tmp_path, samples):
    """Train the tiny preset on 2 targets (repeated) until the loss is small; greedy generation through
    ``wise_rl.evaluate.HFGenerator`` (answer-only prompt, stop at ``</answer>``) returns one target exactly and the
    eval path scores it perfectly against its own box."""
    from datasets import Dataset

    from wise_rl.evaluate import HFGenerator
    from wise_rl.metrics import box_iou
    from wise_rl.models import load_model, load_processor
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model
    from wise_rl.testbed.pretrain.rows import pretrain_row
    from wise_rl.testbed.pretrain.run import PretrainConfig, make_trainer

    folder = build_tiny_model(tmp_path / "model", preset="tiny", seed=0)
    processor = load_processor(folder)
    model = load_model(folder, dtype=torch.float32)
    rows = [pretrain_row(s) for s in samples]
    steps, batch = 150, 4
    train = Dataset.from_list([dict(r) for r in rows] * (steps * batch // len(rows)))
    config = PretrainConfig(out=str(tmp_path), preset="tiny", max_steps=steps, batch_size=batch, lr=1e-2,
                            warmup_steps=10, min_lr_ratio=0.1, weight_decay=0.0, logging_steps=25, progress=False)
    trainer = make_trainer(model, processor, train, config, output_dir=tmp_path / "trainer")
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.5 < losses[0], losses

    gen = HFGenerator(model.eval(), processor, "answer-only", max_new_tokens=64)
    outs = gen([s["image"] for s in samples], [s["query"] for s in samples])
    targets = [r["completion"][0]["content"] for r in rows]
    exact = [o.completion == t for o, t in zip(outs, targets)]
    assert any(exact), {"generated": [o.completion for o in outs], "targets": targets}
    k = exact.index(True)
    parsed = formats.parse_for_prompt(outs[k].completion, "answer-only")
    assert parsed.ok
    assert box_iou(parsed.bbox, samples[k]["gt_bbox"]) == pytest.approx(1.0)
