"""Smoke tests of ``wise-rl bench generation`` / ``grpo-step`` (tiny sizes; speed is never asserted) and of the
baselines they compare against."""

from __future__ import annotations

import math

import pytest

from wise_rl.testbed import bench

REWARDS_SECTION = "## Rewards\n\n- command: `wise-rl bench rewards`\n\n**Speed-up: 2.6×**\n"


def _doc(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n" + REWARDS_SECTION)
    return path


def test_plain_reward_functions_agree_with_the_registry():
    """The plain GRPO baseline's official-style reward functions give the registry's values on a realistic batch
    (right, wrong and malformed completions), in TRL's conversational completion form."""
    from rewards import get_reward

    batch = bench.make_reward_batch(n_prompts=3, n_samples=4, seed=1)
    completions = [[{"role": "assistant", "content": c}] for c in batch["completions"]]
    columns = {"gt_bbox": batch["gt_bbox"], "gt_points": batch["gt_points"]}
    plain = bench.plain_reward_funcs(tokenizer=None)
    names = [f.__name__ for f in plain]
    assert names == ["format", "answer_schema", "bbox_iou", "bbox_l1", "points", "self_distillation"]
    for func in plain[:5]:  # self_distillation needs the embedding model; the rewards bench checks it
        ours = get_reward(func.__name__)(prompts=batch["prompts"], completions=completions, **columns)
        theirs = func(prompts=batch["prompts"], completions=completions, **columns)
        assert theirs == pytest.approx([0.0 if v is None else v for v in ours]), func.__name__
    assert 0 < sum(plain[0](completions=completions)) < len(completions)  # some malformed, some not


def test_bench_generation_returns_figures_and_ratios(tiny_model_dir, shapeworld_dir, tmp_path):
    doc = _doc(tmp_path)
    r = bench.bench_generation(model=tiny_model_dir, dataset=str(shapeworld_dir), split="test", n=3, batch_size=2,
                               max_new_tokens=4, progress=False, write=doc)
    assert r["n"] == 3
    for p in ("verbose", "wise-s"):
        assert r[f"{p}_latency_mean_s"] > 0
        assert r[f"{p}_completion_tokens_mean"] > 0
        assert len(r["samples"][p]) == 3
        assert all(s["latency_s"] > 0 and 1 <= s["completion_tokens"] <= 4 for s in r["samples"][p])
    assert r["latency_ratio"] == pytest.approx(r["verbose_latency_mean_s"] / r["wise-s_latency_mean_s"])
    assert r["completion_tokens_ratio"] == pytest.approx(
        r["verbose_completion_tokens_mean"] / r["wise-s_completion_tokens_mean"])
    text = doc.read_text()
    assert REWARDS_SECTION.strip() in text and "## Generation" in text
    assert f"--model {tiny_model_dir}" in text and f"{r['latency_ratio']:.2f}×" in text
    assert "samples" not in bench.format_result(r).split(":")[0::2]


def test_bench_generation_model_is_trained_on_both_formats_and_reused(tmp_path):
    folder, info = bench.build_generation_model(tmp_path / "m", scenes=2, steps=2, batch_size=2, progress=False)
    assert (folder / "config.json").is_file() and info["train_rows"] == 4  # 2 scenes × (verbose, wise-s)
    assert "verbose` prompt → verbose target" in info["description"]
    assert "`wise-s` prompt → wise target" in info["description"]
    again, info2 = bench.build_generation_model(tmp_path / "m", scenes=2, steps=2, batch_size=2, progress=False)
    assert again == folder and info2 == info  # same settings: reused, not retrained
    with pytest.raises(ValueError, match="train prompt"):
        bench.build_generation_model(tmp_path / "x", train_prompts=("answer-only",))


def test_bench_grpo_step_times_recipe_and_plain_trainers(tiny_model_dir, tmp_path):
    doc = _doc(tmp_path)
    r = bench.bench_grpo_step(
        steps=1, rounds=1, model=tiny_model_dir, work_dir=tmp_path / "work", variants=("recipe", "plain"),
        max_completion_length=4, progress=False, write=doc,
        extra_args=("--per_device_train_batch_size", "2", "--num_generations", "2",
                    "--gradient_accumulation_steps", "1", "--shapeworld_rows", "4"),
    )
    assert r["timed_steps_per_variant"] == 1
    assert r["recipe_s_per_step"] > 0 and r["plain_s_per_step"] > 0 and r["recipe_warmup_s"] > 0
    assert r["ratio"] == pytest.approx(r["recipe_s_per_step"] / r["plain_s_per_step"])
    assert math.isfinite(r["ratio"]) and "ratio_registry" not in r
    assert r["settings"]["num_generations"] == 2 and r["settings"]["max_completion_length"] == 4
    assert r["config_differences"]["plain"] == [] or set(r["config_differences"]["plain"]) <= {
        "ddp_find_unused_parameters", "save_steps", "save_total_limit"}
    assert r["same_rollouts"] is True  # same seed, same model, same data: the same completions
    text = doc.read_text()
    assert REWARDS_SECTION.strip() in text and "## GRPO step" in text and f"{r['ratio']:.3f}" in text


def test_bench_grpo_step_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps and rounds"):
        bench.bench_grpo_step(steps=0)
    with pytest.raises(ValueError, match="variants"):
        bench.bench_grpo_step(variants=("plain",))


def test_bench_generation_compact_style_from_an_init_model(tiny_model_dir, tmp_path):
    """--train-init starts the bench model from a model folder; --prompt-style compact words the training rows and
    both generation prompts (results keep the names verbose / wise-s; the command in the doc says how to re-run)."""
    folder, info = bench.build_generation_model(tmp_path / "m", scenes=2, steps=2, batch_size=2, lr=1e-3,
                                                init=str(tiny_model_dir), prompt_style="compact", progress=False)
    assert info["settings"]["init"] == str(tiny_model_dir) and info["train_rows"] == 4
    assert info["description"].startswith(f"`{tiny_model_dir}` SFT-trained")
    assert "`verbose-compact` prompt → verbose target" in info["description"]
    doc = _doc(tmp_path)
    r = bench.bench_generation(n=2, batch_size=2, max_new_tokens=4, work_dir=tmp_path / "m", progress=False,
                               write=doc, model_options={"scenes": 2, "steps": 2, "batch_size": 2, "lr": 1e-3,
                                                         "init": str(tiny_model_dir), "prompt_style": "compact"})
    assert r["prompts"] == {"verbose": "verbose-compact", "wise-s": "wise-s-compact"}
    assert r["model_train_wall_s"] == info["train_wall_s"]  # reused, not retrained
    text = doc.read_text()
    assert f"--train-init {tiny_model_dir} --train-lr 0.001 --train-steps 2 --train-scenes 2 --prompt-style compact" \
        in text and "`wise-s-compact`" in text
    with pytest.raises(FileNotFoundError, match="no config.json"):
        bench.build_generation_model(tmp_path / "y", init=str(tmp_path / "nothing"), steps=1, scenes=1)


def test_bench_cli_quiet_hides_progress_bars(tiny_model_dir, shapeworld_dir, tmp_path, capsys):
    from wise_rl.cli import main

    args = ["bench", "generation", "--model", str(tiny_model_dir), "--dataset", str(shapeworld_dir), "--split",
            "test", "--n", "2", "--batch-size", "2", "--max-new-tokens", "4", "--no-write"]
    assert main([*args, "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert "latency_ratio" in quiet.out and "bench generation" not in quiet.err
    assert main(args) == 0
    assert "bench generation" in capsys.readouterr().err  # the tqdm bar


def test_bench_precision_times_fp32_and_bf16_steps_and_names_the_cpu(tmp_path, tiny_model_dir, shapeworld_dir):
    from wise_rl.testbed.bench import bench_precision

    doc = tmp_path / "bench.md"
    result = bench_precision(steps=1, rounds=1, model=str(tiny_model_dir), dataset=str(shapeworld_dir),
                             config="recipes/tiny/sft.yaml", write=doc)
    assert result["steps_timed"] == {"fp32": 1, "bf16": 1}
    assert result["fp32_s_per_step"] > 0 and result["bf16_s_per_step"] > 0
    assert result["ratio_bf16_over_fp32"] == result["bf16_s_per_step"] / result["fp32_s_per_step"]
    text = doc.read_text()
    assert "## Precision" in text and "| fp32 |" in text and "CPU " in result["machine"]
