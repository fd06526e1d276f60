"""GRPO run logs: readable samples where sample_log_every says, a warning when rewards carry no signal."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from wise_rl.training.logs import CompletionSamplesCallback, ZeroSpreadCallback, completion_samples


def _parquet(folder, step, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "step": [step] * n,
        "prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"find {i}"}]}]
                   for i in range(n)],
        "completion": [[{"role": "assistant", "content": f"<think>a\n b</think> {i}"}] for i in range(n)],
        "format": [1.0, 0.0, 1.0][:n], "bbox_iou": [0.5, float("nan"), 0.25][:n], "advantage": [0.3, -0.6, 0.3][:n],
    }).to_parquet(folder / f"completions_{step:05d}.parquet")


def test_completion_samples_reads_trl_parquet(tmp_path):
    _parquet(tmp_path, 4)
    recs = completion_samples(tmp_path / "completions_00004.parquet", 2)
    assert [r["prompt"] for r in recs] == ["find 0", "find 1"]
    assert recs[0]["completion"] == "<think>a\n b</think> 0"
    assert recs[0]["rewards"] == {"format": 1.0, "bbox_iou": 0.5} and recs[0]["reward"] == 1.5
    assert recs[1]["rewards"] == {"format": 0.0, "bbox_iou": None} and recs[1]["reward"] == 0.0
    assert recs[1]["advantage"] == -0.6


def test_samples_callback_writes_only_every_nth_step_once(tmp_path, caplog):
    args, state = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(is_world_process_zero=True)
    cb = CompletionSamplesCallback(every=2, count=1)
    for step in (1, 2, 3):
        _parquet(tmp_path / "completions", step)
        with caplog.at_level("INFO"):
            cb.on_step_end(args, state, None)
    _parquet(tmp_path / "completions", 4)
    cb.on_train_end(args, state, None)
    cb.on_train_end(args, state, None)  # idempotent
    recs = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4]
    assert "step 2 sample: reward 1.50 (format 1.00, bbox_iou 0.50): <think>a b</think> 0" in caplog.text


def test_zero_spread_warns_once_after_patience(caplog):
    args, state = SimpleNamespace(num_generations=4), SimpleNamespace(is_world_process_zero=True, global_step=0)
    cb = ZeroSpreadCallback(patience=3)
    with caplog.at_level("WARNING"):
        for step, frac in enumerate([1.0, 1.0, 0.5, 1.0, 1.0], start=1):  # the run is broken at step 3
            state.global_step = step
            cb.on_log(args, state, None, logs={"frac_reward_zero_std": frac})
        assert "identical rewards" not in caplog.text
        for step in (6, 7, 8):
            state.global_step = step
            cb.on_log(args, state, None, logs={"frac_reward_zero_std": 1.0, "loss": 0.0})
    assert caplog.text.count("identical rewards") == 1
    assert "step 6: for 3 logged steps every group of 4 completions" in caplog.text


def test_recipe_news_shows_at_the_default_log_level_on_the_main_process_only(tmp_path):
    import logging

    from trl import SFTConfig

    from wise_rl import training

    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], activation_checkpointing=False)
    assert args.log_level == "passive"  # TRL's default
    training.configure_logging(args)
    assert logging.getLogger("wise_rl.training").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("recipes.sft").getEffectiveLevel() == logging.INFO
    quiet = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], activation_checkpointing=False, log_level="warning")
    training.configure_logging(quiet)  # an explicit level is obeyed
    assert logging.getLogger("wise_rl.training").getEffectiveLevel() == logging.WARNING

    class OtherProcess(SFTConfig):  # a process that is not the main one
        should_log = property(lambda self: False)

    training.configure_logging(OtherProcess(output_dir=str(tmp_path), use_cpu=True, report_to=[], activation_checkpointing=False))
    assert logging.getLogger("wise_rl.training").getEffectiveLevel() == logging.WARNING  # the news appears once
    training.configure_logging(args)  # back to the default for the tests that follow
