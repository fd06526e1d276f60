"""The WISE reward set inside a real ``trl.GRPOTrainer`` step on the tiny model and ShapeWorld rows."""

from __future__ import annotations

import math

import pytest

from rewards import get_reward
from wise_rl.formats import render_prompt

NAMES = ["format", "answer_schema", "bbox_iou", "bbox_l1", "points", "mask_iou", "self_distillation", "brevity",
         "length_l1_max"]


def test_wise_rewards_in_a_grpo_step(tiny_model_dir, shapeworld_dir, tmp_path):
    from datasets import load_from_disk
    from trl import GRPOConfig, GRPOTrainer

    from wise_rl.models import load_model, load_processor

    train = load_from_disk(str(shapeworld_dir))["train"].select(range(4))
    train = train.map(lambda q: {"prompt": [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": render_prompt("wise-train", q)}]}]}, input_columns=["query"])
    processor = load_processor(tiny_model_dir)
    model = load_model(tiny_model_dir)
    options = {"self_distillation": {"tokenizer": processor, "device": "cpu"}, "brevity": {"tokenizer": processor},
               "length_l1_max": {"tokenizer": processor}}
    funcs = [get_reward(n, **options.get(n, {})) for n in NAMES]
    seen_columns = {}

    def spy(prompts, completions, **kwargs):  # records what TRL hands the rewards
        seen_columns.update({k: v for k, v in kwargs.items() if k.startswith("gt_") or k == "image"})
        seen_columns["completions"] = completions
        return [0.0] * len(completions)

    config = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=16, report_to=[], use_cpu=True, bf16=False, logging_steps=1, save_strategy="no",
        learning_rate=1e-3, seed=0, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=funcs + [spy], args=config, train_dataset=train,
                          processing_class=processor)
    trainer.train()

    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    for name in NAMES:
        assert f"rewards/{name}/mean" in logs, (name, sorted(logs))
        value = logs[f"rewards/{name}/mean"]
        assert isinstance(value, float)
    assert math.isfinite(logs["rewards/format/mean"])
    assert 0.0 <= logs["self_distillation/gate_pass_rate"] <= 1.0
    assert {"gt_bbox", "gt_points", "gt_mask", "image"} <= set(seen_columns)
    assert len(seen_columns["gt_bbox"]) == 2 and len(seen_columns["gt_bbox"][0]) == 4
    # what TRL recorded per completion is what the rewards give on those completions outside the trainer
    completions = seen_columns.pop("completions")
    for name, f in zip(NAMES, funcs):
        expected = [math.nan if v is None else v for v in f(prompts=["q"] * 2, completions=completions,
                                                             **seen_columns)]
        logged = list(trainer._logs["rewards"][name])[-2:]
        assert logged == pytest.approx(expected, nan_ok=True), name
