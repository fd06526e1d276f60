"""GRPO / RLOO recipe: rows keep the ground truth, every WISE reward component is logged, RLOO runs, it learns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from wise_rl import formats, training

ROOT = Path(__file__).resolve().parents[2]
WISE = ["format", "answer_schema", "bbox_iou", "bbox_l1", "points", "self_distillation", "mask_iou"]


def grpo_argv(model_dir, data_dir, out, *extra):
    """Small, fast settings: 2 prompts × 2 samples per step, 16 completion tokens."""
    return ["--model_name_or_path", str(model_dir), "--dataset", str(data_dir), "--dataset_split", "train",
            "--dataset_limit", "8", "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none",
            "--per_device_train_batch_size", "4", "--num_generations", "2", "--gradient_accumulation_steps", "1",
            "--max_completion_length", "16", "--logging_steps", "1", "--save_strategy", "no",
            "--learning_rate", "1e-3", "--seed", "0", "--gradient_checkpointing", "false", *extra]


def test_grpo_rows_keep_ground_truth_and_add_a_conversational_prompt(shapeworld_dir):
    from wise_rl.data.loaders import load_source

    ds = load_source(str(shapeworld_dir), split="train", limit=4)
    rows = training.grpo_rows(ds, "wise-train")
    for col in ("image", "gt_bbox", "gt_points", "gt_mask", "model_size", "query"):
        assert col in rows.column_names
    assert rows[0]["prompt"] == [{"role": "user", "content": formats.render_prompt("wise-train", ds[0]["query"])}]
    assert rows[0]["gt_bbox"] == ds[0]["gt_bbox"]


def test_reward_funcs_get_the_policy_tokenizer_and_options(tiny_model_dir):
    from wise_rl.models import load_processor

    tok = load_processor(tiny_model_dir).tokenizer
    script_args = training.GRPOScriptArguments(
        dataset="shapeworld", reward_funcs=["format", "self_distillation", "bbox_iou"],
        reward_options={"self_distillation": {"gate_threshold": 0.3}},
    )
    funcs = training.build_reward_funcs(script_args, tok)
    assert [f.__name__ for f in funcs] == ["format", "self_distillation", "bbox_iou"]
    distill = funcs[1]
    assert distill.tokenizer is tok and distill.gate_threshold == 0.3
    completion = ('<think>a</think><answer>{"bbox": [0, 0, 9, 9], "points_1": [2, 2], "points_2": [5, 5]}</answer>'
                  "<d_think>b</d_think>")
    logged = {}
    out = funcs[0](prompts=["q"], completions=[completion], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [1.0] and logged["completions/think_tokens"] >= 1
    assert funcs[2](prompts=["q"], completions=[completion], gt_bbox=[[0, 0, 9, 9]]) == [1.0]


def test_tiny_grpo_with_the_wise_rewards_logs_every_component(tiny_model_dir, shapeworld_dir, tmp_path, capsys):
    from wise_rl.scripts import grpo

    out = tmp_path / "grpo"
    argv = grpo_argv(tiny_model_dir, shapeworld_dir, out, "--max_steps", "2", "--beta", "0.01",
                     "--loss_type", "grpo", "--reward_funcs", *WISE, "--reward_weights", *["1"] * len(WISE),
                     "--sample_log_every", "1", "--sample_log_count", "1")
    t0 = time.perf_counter()
    result = grpo.main(*training.parse_grpo_args(argv))
    elapsed = time.perf_counter() - t0
    assert result["global_step"] == 2
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "reward" in h]
    assert len(steps) == 2
    for h in steps:
        for name in WISE:
            assert f"rewards/{name}/mean" in h, f"rewards/{name}/mean missing from {sorted(h)}"
        for key in ("kl", "completions/mean_length", "completions/think_tokens", "completions/d_think_tokens",
                    "reward_std", "entropy"):
            assert key in h, key
    assert list((out / "completions").glob("completions_*.parquet")), "no sample completions logged"
    # sample_log_every 1, count 1: one readable sample per step with every reward, and no TRL console table
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 2]
    assert set(samples[0]["rewards"]) == set(WISE) and samples[0]["completion"] and samples[0]["prompt"]
    assert samples[0]["reward"] == pytest.approx(sum(samples[0]["rewards"].values()))
    assert "┏" not in capsys.readouterr().out
    assert json.loads((out / "wise_rl.json").read_text())["eval_prompt"] == "wise"
    assert (out / "model.safetensors").is_file() and (out / "DONE").is_file()
    print(f"\ntiny GRPO: 2 steps × 4 completions × 16 tokens in {elapsed:.1f} s incl. setup; "
          f"step_time {[round(h.get('step_time', 0), 2) for h in steps]}")


def test_rloo_runs_a_step(tiny_model_dir, shapeworld_dir, tmp_path):
    from trl import RLOOConfig

    from wise_rl.scripts import grpo

    out = tmp_path / "rloo"
    parsed = training.parse_grpo_args(grpo_argv(tiny_model_dir, shapeworld_dir, out, "--algorithm", "rloo",
                                                "--max_steps", "1", "--reward_funcs", "format", "bbox_iou",
                                                "--beta", "0.0"))
    assert isinstance(parsed[1], RLOOConfig)
    result = grpo.main(*parsed)
    assert result["global_step"] == 1
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert "rewards/bbox_iou/mean" in history[0] and "rewards/format/mean" in history[0]


def test_qlora_grpo_step_runs_on_cpu(tiny_model_dir, shapeworld_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from wise_rl.scripts import grpo

    out = tmp_path / "qlora"
    result = grpo.main(*training.parse_grpo_args(grpo_argv(
        tiny_model_dir, shapeworld_dir, out, "--max_steps", "1", "--reward_funcs", "format", "bbox_iou",
        "--load_in_4bit", "true", "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8")))
    assert result["global_step"] == 1 and result["quantized"] == "4bit" and result["peft"]
    assert (out / "adapter_model.safetensors").is_file()


def test_a_reward_without_its_ground_truth_column_is_refused_before_training():
    """refCOCOg-like rows (gt_bbox, no gt_mask): mask_iou, or self_distillation gated on mask_iou, would be None
    for every sample; the check names the reward and the column. bbox-gated rewards pass."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets import Image as ImageFeature

    from rewards import get_reward

    rows = Dataset.from_dict({"gt_bbox": [[0.0, 0.0, 9.0, 9.0]] * 3, "gt_mask": [None] * 3},
                             features=Features({"gt_bbox": Sequence(Value("float32")), "gt_mask": ImageFeature()}))
    ok = [training.with_length_diagnostics(get_reward("format")), get_reward("bbox_iou"),
          get_reward("self_distillation")]
    training.check_reward_columns(ok, rows)
    for funcs, name, column in (
        ([get_reward("format"), get_reward("self_distillation", gate="mask_iou")], "self_distillation", "gt_mask"),
        ([training.with_length_diagnostics(get_reward("mask_iou"))], "mask_iou", "gt_mask"),
        ([get_reward("points")], "points", "gt_points"),
    ):
        with pytest.raises(training.ConfigError, match=rf"{name}.*'{column}'"):
            training.check_reward_columns(funcs, rows, "dataset 'refcocog'")


def test_a_reward_none_for_a_whole_batch_says_so_once(caplog):
    from rewards import get_reward

    reward = get_reward("mask_iou")
    completion = ('<think>a</think><answer>{"bbox": [0, 0, 9, 9], "points_1": [2, 2], "points_2": [5, 5]}</answer>'
                  "<d_think>b</d_think>")
    with caplog.at_level("WARNING", logger="rewards._base"):
        for _ in range(3):
            assert reward(prompts=["q", "q"], completions=[completion] * 2, gt_bbox=[[0, 0, 9, 9]] * 2) == [None] * 2
    said = [r.getMessage() for r in caplog.records if "mask_iou" in r.getMessage()]
    assert len(said) == 1 and "gt_mask" in said[0]


def test_grpo_recipe_on_data_without_masks_stops_before_training(tiny_model_dir, tmp_path):
    """refCOCOg_2k_840-like rows (no gt_mask) with self_distillation gated on mask_iou: the recipe refuses before
    the trainer is built, naming the reward and the column (it used to train with rewards/…/mean None)."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    from PIL import Image

    rows = {"id": ["r1", "r2"], "problem": ["the dog", "the cup"],
            "solution": ["<box>(84,168),(419,671)</box><points>(200,400),(300,500)</points>"] * 2,
            "image": [Image.new("RGB", (840, 840), (10, 200, 10))] * 2, "img_height": [210, 210],
            "img_width": [420, 420]}
    features = Features({"id": Value("string"), "problem": Value("string"), "solution": Value("string"),
                         "image": ImageFeature(), "img_height": Value("int64"), "img_width": Value("int64")})
    data = tmp_path / "refcocog.parquet"
    Dataset.from_dict(rows, features=features).to_parquet(str(data))
    from wise_rl.scripts import grpo

    argv = grpo_argv(tiny_model_dir, data, tmp_path / "out", "--max_steps", "1", "--model_size", "112",
                     "--reward_funcs", "format", "self_distillation",
                     "--reward_options", '{"self_distillation": {"gate": "mask_iou"}}')
    argv[argv.index("--dataset_split") + 1] = "train"
    with pytest.raises(training.ConfigError, match="self_distillation.*'gt_mask'"):
        grpo.main(*training.parse_grpo_args(argv))
    assert not (tmp_path / "out" / "trainer_state.json").exists()


def completion_chars(completions, **kwargs):
    """A reward that differs within a group of a random model's samples: the completion's length in characters."""
    return [float(len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]


def test_grpo_step_changes_every_trainable_parameter(tiny_model_dir, shapeworld_dir, tmp_path, monkeypatch):
    """As TRL's own GRPO tests: snapshot the trainable parameters, train with a reward that varies within each
    group (so advantages are non-zero), and check that every one of them moved."""
    from wise_rl.scripts import grpo

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the reward is this module's, by dotted path
    argv = grpo_argv(tiny_model_dir, shapeworld_dir, tmp_path / "learn", "--max_steps", "2",
                     "--reward_funcs", f"{__name__}:completion_chars", "--temperature", "1.0", "--beta", "0.0")
    parsed = training.parse_grpo_args(argv)
    training.validate_grpo_args(*parsed)
    trainer, _, _ = grpo.build_trainer(*parsed)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before
    trainer.train()
    steps = [h for h in trainer.state.log_history if "reward_std" in h]
    assert steps and all(h["frac_reward_zero_std"] < 1.0 for h in steps), steps  # the reward varied in a group
    unchanged = [n for n, p in before.items() if torch.equal(p, trainer.model.get_parameter(n))]
    assert not unchanged, f"{len(unchanged)} of {len(before)} trainable parameters did not change: {unchanged[:5]}"


def test_fewer_prompt_rows_than_one_step_takes_is_refused_not_trained_for_0_steps(tiny_model_dir, shapeworld_dir,
                                                                                   tmp_path):
    from wise_rl.scripts import grpo

    out = tmp_path / "out"
    argv = grpo_argv(tiny_model_dir, shapeworld_dir, out, "--max_steps", "2")
    argv[argv.index("--dataset_limit") + 1] = "1"  # one prompt; a step takes 4 completions / 2 generations = 2
    with pytest.raises(training.ConfigError, match=r"1 prompt rows, fewer than one optimizer step takes \(2 = "):
        grpo.main(*training.parse_grpo_args(argv))
    assert not (out / "model.safetensors").exists() and not (out / "DONE").exists()
    argv[argv.index("--dataset_limit") + 1] = "2"  # exactly one step's prompts: trains
    assert grpo.main(*training.parse_grpo_args(argv))["global_step"] == 2
