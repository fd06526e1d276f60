"""Recipe configuration: every shipped YAML parses, presets merge, CLI beats YAML, bad values fail early and clearly."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml

from wise_rl import training
from wise_rl.training import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ALL_YAML = sorted(glob.glob(str(ROOT / "recipes" / "**" / "*.yaml"), recursive=True))
# demo profiles are `wise-rl demo` data, not recipe configs: they are checked by tests/testbed/test_demo.py
RECIPES = [p for p in ALL_YAML if not Path(p).name.startswith("profile_")]


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_yaml_under_recipes_starts_with_its_launch_command(path):
    assert Path(path).read_text().startswith("# Launch"), f"{path} must start with its launch command"
DS_CONFIGS = sorted(glob.glob(str(ROOT / "deepspeed_configs" / "*.yaml")))


def _parse(kind, argv):
    return (training.parse_sft_args if kind == "sft" else training.parse_grpo_args)(argv)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_recipe_parses_and_starts_with_its_launch_command(path):
    text = Path(path).read_text()
    assert text.startswith("# Launch"), f"{path} must start with its launch command"
    kind = "sft" if "sft" in Path(path).name else "grpo"
    extra = ["--output_dir", "/tmp/unused", "--bf16", "false"]
    if "presets" in path:
        extra += ["--model_name_or_path", "m", "--dataset", "d"]
    script_args, args, model_args = _parse(kind, ["--config", path, *extra])
    assert model_args.model_name_or_path and script_args.dataset
    if kind == "grpo":
        # the generation batch holds whole groups, rewards and weights line up
        assert args.generation_batch_size % args.num_generations == 0
        assert args.reward_weights is None or len(args.reward_weights) == len(script_args.reward_funcs)
        assert args.remove_unused_columns is False


@pytest.mark.parametrize("path", DS_CONFIGS, ids=lambda p: Path(p).name)
def test_deepspeed_configs_are_headed_and_valid_yaml(path):
    text = Path(path).read_text()
    assert text.startswith("# Launch"), path
    cfg = yaml.safe_load(text)
    assert cfg["distributed_type"] in ("NO", "MULTI_GPU", "DEEPSPEED")
    if cfg["distributed_type"] == "DEEPSPEED":
        assert cfg["deepspeed_config"]["zero_stage"] in (2, 3)
    if "cpu_" in Path(path).name:
        assert cfg["use_cpu"] is True and cfg["num_processes"] == 2


def test_wise_paper_preset_carries_the_paper_settings():
    _, args, _ = _parse("grpo", ["--config", str(ROOT / "recipes/presets/wise-paper.yaml"), "--output_dir", "/tmp/x",
                                 "--bf16", "false", "--model_name_or_path", "m"])
    assert args.learning_rate == 1e-6 and args.lr_scheduler_type == "constant"
    assert args.beta == 5e-3 and args.num_generations == 8 and args.temperature == 1.0
    assert args.max_completion_length == 1300 and args.num_train_epochs == 1
    assert args.weight_decay == 0.01 and args.max_grad_norm == 1.0 and args.epsilon == 0.2
    prompts_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps // args.num_generations
    assert prompts_per_step == 16


def test_ppo_preset_is_clipped_grpo_with_kl_and_several_iterations():
    _, args, _ = _parse("grpo", ["--config", str(ROOT / "recipes/presets/ppo.yaml"), "--output_dir", "/tmp/x",
                                 "--bf16", "false", "--model_name_or_path", "m", "--dataset", "d"])
    assert args.loss_type == "grpo" and args.beta > 0 and args.num_iterations > 1


def test_preset_is_merged_under_the_file_and_cli_wins(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: wise-paper\nmodel_name_or_path: m\nlearning_rate: 2.0e-6\nbf16: false\n")
    script_args, args, _ = _parse("grpo", ["--config", str(cfg), "--output_dir", str(tmp_path),
                                           "--num_generations", "4"])
    assert args.learning_rate == 2e-6  # the file beats the preset
    assert args.beta == 5e-3  # the preset fills the rest
    assert args.num_generations == 4  # the command line beats both
    assert script_args.dataset == "Ricky06662/refCOCOg_2k_840"


def test_unknown_preset_names_the_known_ones(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: nope\n")
    with pytest.raises(ConfigError, match="preset 'nope' not found; known presets: .*wise-paper"):
        _parse("grpo", ["--config", str(cfg)])


def test_rloo_algorithm_selects_the_rloo_config(tmp_path):
    from trl import RLOOConfig

    _, args, _ = _parse("grpo", ["--algorithm", "rloo", "--output_dir", str(tmp_path), "--use_cpu", "true"])
    assert isinstance(args, RLOOConfig)


# ---- early validation ------------------------------------------------------------------------------------------
@pytest.fixture()
def base_argv(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    return ["--model_name_or_path", str(model), "--dataset", "shapeworld", "--output_dir", str(tmp_path / "out"),
            "--use_cpu", "true"]


def _grpo_error(argv):
    with pytest.raises(ConfigError) as info:
        training.validate_grpo_args(*training.parse_grpo_args(argv))
    return str(info.value)


def _sft_error(argv):
    with pytest.raises(ConfigError) as info:
        training.validate_sft_args(*training.parse_sft_args(argv))
    return str(info.value)


def test_valid_config_passes(base_argv):
    training.validate_grpo_args(*training.parse_grpo_args(base_argv))
    training.validate_sft_args(*training.parse_sft_args(base_argv))


def test_unknown_reward_is_named_with_the_known_ones(base_argv):
    msg = _grpo_error(base_argv + ["--reward_funcs", "format", "iou"])
    assert "reward_funcs[1]: 'iou' is not a known reward" in msg and "bbox_iou" in msg


def test_reward_weights_must_match_reward_funcs(base_argv):
    msg = _grpo_error(base_argv + ["--reward_funcs", "format", "bbox_iou", "--reward_weights", "1", "1", "1"])
    assert "3 weights" in msg and "2 reward_funcs" in msg


def test_generation_batch_not_divisible_by_num_generations(base_argv):
    msg = _grpo_error(base_argv + ["--num_generations", "3", "--per_device_train_batch_size", "4"])
    assert "divisible by num_generations" in msg


def test_reward_options_for_an_unlisted_reward(base_argv):
    msg = _grpo_error(base_argv + ["--reward_funcs", "format", "--reward_options", '{"bbox_iou": {}}'])
    assert "reward_options: 'bbox_iou' is not one of reward_funcs" in msg


def test_reward_options_bad_json(base_argv):
    assert "not valid JSON" in _grpo_error(base_argv + ["--reward_options", "{bad"])


def test_unknown_algorithm(base_argv):
    msg = _grpo_error(base_argv + ["--algorithm", "ppo"])
    assert "algorithm: 'ppo' is not supported" in msg and "grpo, rloo" in msg


def test_remove_unused_columns_true_is_refused(base_argv):
    assert "remove_unused_columns" in _grpo_error(base_argv + ["--remove_unused_columns", "true"])


def test_unknown_target_mode(base_argv):
    assert "target_mode: 'thin' unknown" in _sft_error(base_argv + ["--target_mode", "thin"])


def test_the_concise_target_goes_with_the_inference_prompts_only(base_argv):
    """target_mode concise (<think>concise</think><answer>…</answer>) is what the wise / wise-s prompts ask for; the
    training prompt asks for the detailed part as well."""
    args = training.parse_sft_args(base_argv + ["--target_mode", "concise", "--prompt_template", "wise,wise-s"])
    training.validate_sft_args(*args)
    assert training.sft_prompt_template(training.parse_sft_args(base_argv + ["--target_mode", "concise"])[0]) == "wise"
    msg = _sft_error(base_argv + ["--target_mode", "concise", "--prompt_template", "wise-train"])
    assert "asks for a 'wise' completion but target_mode is 'concise'; use prompt_template 'wise'" in msg


def test_unknown_prompt_template(base_argv):
    msg = _sft_error(base_argv + ["--prompt_template", "wise-xl"])
    assert "prompt_template: 'wise-xl' is unknown" in msg and "wise-train" in msg


def test_prompt_that_asks_for_another_target(base_argv):
    msg = _sft_error(base_argv + ["--target_mode", "verbose", "--prompt_template", "wise-train"])
    assert "asks for a 'wise' completion but target_mode is 'verbose'" in msg


def test_a_template_list_must_match_the_target_mode(base_argv):
    training.validate_sft_args(*training.parse_sft_args(base_argv + ["--prompt_template", "wise-train,wise-s"]))
    msg = _sft_error(base_argv + ["--prompt_template", "wise-train,verbose"])
    assert "'verbose' asks for a 'verbose' completion but target_mode is 'wise'" in msg
    assert "GRPO takes one template" in _grpo_error(base_argv + ["--prompt_template", "wise-train,wise-s"])


def test_missing_dataset(tmp_path):
    (tmp_path / "m").mkdir()
    msg = _sft_error(["--model_name_or_path", str(tmp_path / "m"), "--output_dir", str(tmp_path), "--use_cpu", "true"])
    assert msg.startswith("dataset: missing")


def test_dataset_path_that_does_not_exist(base_argv, tmp_path):
    argv = base_argv + ["--dataset", str(tmp_path / "nothing-here")]
    assert "is not an existing path" in _sft_error(argv)


def test_missing_model_folder_offline(tmp_path):
    msg = _sft_error(["--model_name_or_path", str(tmp_path / "absent"), "--dataset", "shapeworld",
                      "--output_dir", str(tmp_path), "--use_cpu", "true"])
    assert "model_name_or_path" in msg and "does not exist" in msg


def test_quantization_without_lora_is_refused(base_argv):
    msg = _sft_error(base_argv + ["--load_in_4bit", "true"])
    assert "use_peft: true" in msg


def test_unknown_lora_target(base_argv):
    assert "lora_target: 'vision' unknown" in _sft_error(base_argv + ["--use_peft", "true", "--lora_target", "vision"])


def test_min_pixels_above_max_pixels(base_argv):
    msg = _sft_error(base_argv + ["--image_min_pixels", "1000", "--image_max_pixels", "10"])
    assert "image_min_pixels (1000) is larger than image_max_pixels (10)" in msg


def test_resume_from_a_missing_checkpoint(base_argv, tmp_path):
    msg = _sft_error(base_argv + ["--resume_from_checkpoint", str(tmp_path / "checkpoint-9")])
    assert "resume_from_checkpoint" in msg


def test_unknown_yaml_key_is_reported(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("use_cpu: true\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        training.parse_sft_args(["--config", str(cfg)])


# ---- checkpoints: see tests/training/test_run_safety.py and tests/training/test_crash_resume.py ------------------------------------


# ---- lengths diagnostics ------------------------------------------------------------------------------------------
def test_completion_lengths_and_diagnostics_wrapper():
    text = ('<think>red one</think><answer>{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [2, 3]}</answer>'
            "<d_think>the red square is on the left</d_think>")
    assert training.completion_lengths(text) == {"think": 2, "d_think": 7, "answer": 11}
    logged = {}

    def reward(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    wrapped = training.with_length_diagnostics(reward)
    assert wrapped.__name__ == "reward"
    out = wrapped(prompts=["p", "p"], completions=[text, "<think>a b c d</think>"],
                  log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [1.0, 1.0]
    assert logged["completions/think_tokens"] == 3.0  # (2 + 4) / 2
    assert logged["completions/d_think_tokens"] == 3.5
