"""Recipe command lines: TRL's names work, unknown keys name their file and the closest key, presets on the command
line, a GRPO recipe run as RLOO."""

from __future__ import annotations

from pathlib import Path

import pytest

from wise_rl import training
from wise_rl.errors import ConfigError
from wise_rl.training import recipe_args

ROOT = Path(__file__).resolve().parents[2]
TINY_SFT = str(ROOT / "recipes/tiny/sft.yaml")
TINY_GRPO = str(ROOT / "recipes/tiny/grpo.yaml")


def test_trl_names_are_aliases_on_the_command_line():
    script, args, model = training.parse_sft_args([
        "--config", TINY_SFT, "--dataset_name", "owner/data", "--dataset_train_split", "validation",
        "--torch_dtype", "bfloat16", "--gradient_checkpointing", "true"])
    assert (script.dataset, script.dataset_split, model.dtype) == ("owner/data", "validation", "bfloat16")
    assert args.activation_checkpointing is True


def test_trl_names_are_aliases_in_yaml(tmp_path):
    cfg = tmp_path / "trl.yaml"
    cfg.write_text("dataset_name: shapeworld\ntorch_dtype: float32\ndataset_test_split: test\nuse_cpu: true\n"
                   "model_name_or_path: m\noutput_dir: /tmp/x\n")
    script, _, model = training.parse_sft_args(["--config", str(cfg)])
    assert (script.dataset, model.dtype, script.dataset_test_split) == ("shapeworld", "float32", "test")


def test_both_spellings_of_one_option_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match="--dataset and --dataset_name are the same option"):
        training.parse_sft_args(["--config", TINY_SFT, "--dataset_name", "a/b", "--dataset", "c/d"])
    cfg = tmp_path / "both.yaml"
    cfg.write_text("dataset: a\ndataset_name: b\n")
    with pytest.raises(ConfigError, match=r"both.yaml: 'dataset_name' and 'dataset' are the same option"):
        training.parse_sft_args(["--config", str(cfg)])


def test_dataset_config_is_refused_with_what_to_do():
    script, args, model = training.parse_sft_args(["--config", TINY_SFT, "--dataset_config", "default"])
    with pytest.raises(ConfigError, match="dataset_config: 'default'.*parquet/jsonl files or a save_to_disk"):
        training.validate_sft_args(script, args, model)


def test_unknown_yaml_key_names_the_file_and_the_closest_key(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("use_cpu: true\nlearnig_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        training.parse_sft_args(["--config", str(cfg)])
    assert str(info.value) == f"{cfg}: unknown key 'learnig_rate'; did you mean 'learning_rate'?"


def test_unknown_key_in_a_preset_names_the_preset_file(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("num_generatons: 4\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: mine.yaml\nuse_cpu: true\n")
    with pytest.raises(ConfigError, match=f"{preset}: unknown key 'num_generatons'; did you mean 'num_generations'"):
        training.parse_grpo_args(["--config", str(cfg)])


def test_unknown_flag_names_the_closest_flag():
    with pytest.raises(ConfigError, match=r"^--learnig_rate: unknown option; did you mean --learning_rate\?$"):
        training.parse_sft_args(["--config", TINY_SFT, "--learnig_rate", "1"])
    with pytest.raises(ConfigError, match=r"^--zzzz: unknown option$"):
        training.parse_sft_args(["--config", TINY_SFT, "--zzzz", "1"])


def test_documented_rloo_switch_runs_a_grpo_recipe_as_rloo(caplog):
    with caplog.at_level("WARNING"):
        script, args, _ = training.parse_grpo_args(["--config", TINY_GRPO, "--algorithm", "rloo", "--max_steps", "2"])
    assert type(args).__name__ == "RLOOConfig" and script.algorithm == "rloo" and args.max_steps == 2
    assert "loss_type ignored" in caplog.text  # the tiny recipe sets loss_type, which RLOOConfig does not take
    # named explicitly on the command line, a GRPO-only option is still an error
    with pytest.raises(ConfigError, match="--loss_type: unknown option"):
        training.parse_grpo_args(["--config", TINY_GRPO, "--algorithm", "rloo", "--loss_type", "dapo"])


def test_preset_on_the_command_line_overrides_the_file(caplog):
    _, plain, _ = training.parse_grpo_args(["--config", TINY_GRPO])
    with caplog.at_level("WARNING"):
        _, ppo, _ = training.parse_grpo_args(["--config", TINY_GRPO, "--preset", "ppo", "--learning_rate", "0.5"])
    assert (plain.num_iterations, plain.beta) == (1, 0.0)
    assert (ppo.num_iterations, ppo.beta, ppo.num_generations) == (4, 0.04, 8)  # recipes/presets/ppo.yaml
    assert ppo.learning_rate == 0.5  # an explicit flag still beats the preset
    assert ppo.max_steps == plain.max_steps  # keys the preset does not set stay the file's
    assert "--preset ppo replaces" in caplog.text and "beta=0.0→0.04" in caplog.text


def test_unknown_preset_on_the_command_line():
    with pytest.raises(ConfigError, match="preset 'nope' not found; known presets: ppo, wise-paper"):
        training.parse_grpo_args(["--config", TINY_GRPO, "--preset", "nope"])


def test_shipped_recipes_raise_no_deprecation_warning(recwarn):
    for path in sorted((ROOT / "recipes").glob("*/*.yaml")):
        if path.name.startswith("profile_") or path.parent.name == "presets":
            continue
        parse = training.parse_sft_args if "sft" in path.name else training.parse_grpo_args
        parse(["--config", str(path), "--output_dir", "/tmp/unused", "--bf16", "false"])
    deprecations = [str(w.message) for w in recwarn if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not [m for m in deprecations if "checkpointing" in m], deprecations


def test_load_config_renames_aliases_and_keeps_presets_underneath(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: ppo\ndataset_name: shapeworld\nbeta: 0.5\n")
    data = recipe_args.load_config(cfg)
    assert data["dataset"] == "shapeworld" and "dataset_name" not in data
    assert data["beta"] == 0.5 and data["num_iterations"] == 4
