"""The first day on a real run: what would fail hours in stops before step 1 in one line, rewards that cannot score
say so, presets keep the wording, the verbs take the recipes' arguments, and every listed mistake is one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from wise_rl import cli, formats, training
from wise_rl.errors import ConfigError
from wise_rl.training import precision
from wise_rl.training import rewards as training_rewards
from wise_rl.training.checks import warn_prompt_wording
from wise_rl.training.recipe_args import apply_recipe_threads

ROOT = Path(__file__).resolve().parents[2]
TINY_SFT = str(ROOT / "recipes/tiny/sft.yaml")
TINY_GRPO = str(ROOT / "recipes/tiny/grpo.yaml")


def grpo_args(tiny_model_dir, *extra):
    return training.parse_grpo_args(["--config", TINY_GRPO, "--model_name_or_path", str(tiny_model_dir),
                                     "--report_to", "none", *extra])


# ---- 1. resources resolved and loaded before step 1 ------------------------------------------------------------
def test_a_wrong_embedding_model_stops_before_training_in_one_line(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "sentence-transformers/all-mpnet-base-v2"  # not in the offline cache
    script_args, _, _ = grpo_args(tiny_model_dir, "--reward_options",
                                  json.dumps({"self_distillation": {"embedding_model": hub_id}}))
    with pytest.raises(ConfigError) as info:
        training.build_reward_funcs(script_args, None, "three-stage")
    message = str(info.value)
    assert "\n" not in message and "reward_funcs[5] 'self_distillation'" in message
    assert "embedding_model" in message and hub_id in message and "offline" in message


def test_a_missing_sam2_folder_stops_before_training(tiny_model_dir, tmp_path):
    options = {"mask_iou": {"decoder": "sam2", "decoder_options": {"path": str(tmp_path / "no-sam2")}}}
    script_args, _, _ = grpo_args(tiny_model_dir, "--reward_funcs", "format", "mask_iou", "--reward_weights", "1",
                                  "1", "--reward_options", json.dumps(options))
    with pytest.raises(ConfigError, match=r"reward_funcs\[1\] 'mask_iou'.*no-sam2.*config.json missing"):
        training.build_reward_funcs(script_args, None, "three-stage")


def test_the_default_embedding_model_is_loaded_up_front(tiny_model_dir):
    script_args, _, _ = grpo_args(tiny_model_dir)
    funcs = training.build_reward_funcs(script_args, None, "three-stage")
    distill = funcs[list(script_args.reward_funcs).index("self_distillation")]
    assert distill.embedder._model is not None and distill.embedder.calls == 0  # loaded, not yet used


# ---- 2. rewards that cannot score say so ----------------------------------------------------------------------
class _Tok:
    eos_token_id, pad_token_id = 0, 1


WHOLE = "<think>red</think><answer>{}</answer><d_think>the red one</d_think>"
CUT = "<think>red</think><answer>{}</answer><d_think>the red"


def test_completions_cut_before_a_needed_tag_are_found_with_the_rewards_and_a_length_that_fits():
    completions = [[{"role": "assistant", "content": t}] for t in (CUT, CUT, CUT, WHOLE)]
    ids = [[5] * 64, [5] * 64, [5] * 64, [5] * 40 + [0]]  # three end without EOS at 64 tokens
    found = training_rewards.clipped_before_tags(completions, ids, _Tok(), "three-stage",
                                                 ["format", "bbox_iou", "self_distillation"])
    assert found == {"tag": formats.D_THINK_CLOSE, "ratio": 0.75, "rewards": ["format", "self_distillation"],
                     "max_completion_length": 64, "fit": 41}
    assert training_rewards.clipped_before_tags(completions[3:], ids[3:], _Tok(), "three-stage", ["format"]) is None


def test_the_clip_warning_names_ratio_rewards_and_length_once(caplog):
    seen = []
    wrapped = training_rewards.with_length_diagnostics(lambda **kw: [0.0] * len(kw["completions"]), None,
                                                       "three-stage", ["format", "self_distillation"])
    kwargs = {"completions": [CUT] * 4, "completion_ids": [[5] * 64] * 4,
              "log_metric": lambda name, value: seen.append((name, value))}
    with caplog.at_level(logging.WARNING, logger="wise_rl.training.rewards"):
        wrapped(**kwargs)
        wrapped(**kwargs)  # the next call within CLIP_WARN_EVERY: logged as a metric, not warned again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "100% of the completions were cut at max_completion_length 64 before </d_think>" in warnings[0]
    assert "format, self_distillation score 0" in warnings[0] and "no completion reached it" in warnings[0]
    assert ("completions/clipped_before_tag_ratio", 1.0) in seen


def test_the_tiny_grpo_recipe_leaves_room_for_the_whole_wise_target():
    config = training.load_config(TINY_GRPO)
    assert config["max_completion_length"] >= 300  # the tiny SFT model writes ~230-tokens targets (up to ~275)


# ---- 4. one line for every user mistake --------------------------------------------------------------------------
def test_reward_weights_in_the_comma_form_with_the_wrong_count_is_one_line(tiny_model_dir):
    args = grpo_args(tiny_model_dir, "--reward_weights", "1,1,1,0.5,0.5")
    assert args[1].reward_weights == [1.0, 1.0, 1.0, 0.5, 0.5]  # the comma form parses
    with pytest.raises(ConfigError, match=r"reward_weights: 5 weights .* for 6 reward_funcs"):
        training.validate_grpo_args(*args)


def test_an_argparse_error_is_one_config_error_not_a_usage_dump():
    with pytest.raises(ConfigError, match=r"--max_steps.*invalid int value: 'abc'"):
        training.parse_sft_args(["--config", TINY_SFT, "--max_steps", "abc"])


def test_report_to_an_integration_that_is_not_installed(tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    args = grpo_args(tiny_model_dir)
    args[1].report_to = ["trackio"]
    with pytest.raises(ConfigError, match=r"report_to: 'trackio' is not installed \(pip install trackio\)"):
        training.validate_grpo_args(*args)


def test_sft_rows_without_rationales_are_one_line_with_the_count_and_first_id():
    from datasets import Dataset

    rows = Dataset.from_dict({"id": ["a", "b", "c"], "query": ["q"] * 3, "gt_bbox": [[0, 0, 4, 4]] * 3,
                              "gt_points": [[[1, 1], [2, 2]]] * 3, "concise": ["red", None, " "],
                              "detailed": ["the red one"] * 3})
    with pytest.raises(ConfigError, match=r"2 of 3 rows have an empty 'concise' rationale \(first: row 1, id 'b'\)"):
        training.sft_rows(rows, "wise-train", "wise")
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['detailed'\].*wise-rl build-sft"):
        training.sft_rows(rows.remove_columns("detailed"), "wise-train", "wise")


def test_a_recipe_error_prints_one_line_and_exit_status_2(capsys):
    def main(*_):
        raise ConfigError("reward_weights: wrong")

    assert training.run_from_command_line(main, lambda: (None, None, None), "recipes/grpo.py") == 2
    assert capsys.readouterr().err == "recipes/grpo.py: error: reward_weights: wrong\n"


# ---- 5. no silent switches ---------------------------------------------------------------------------------------
def test_a_preset_never_changes_the_prompt_wording(tiny_model_dir, tmp_path):
    script_args, _, _ = grpo_args(tiny_model_dir, "--preset", "ppo")
    assert script_args.prompt_template == "wise-train-compact"  # the recipe's, not the preset's
    bad = tmp_path / "mine.yaml"
    bad.write_text("beta: 0.1\nprompt_template: wise-train\n")
    with pytest.raises(ConfigError, match="presets never change the prompt wording"):
        training.parse_grpo_args(["--config", TINY_GRPO, "--preset", str(bad)])


def test_training_warns_on_a_wording_the_base_did_not_learn(tmp_path, caplog):
    from wise_rl.models import info as model_info

    model_info.write(tmp_path, model_info.training_record(["wise-train-compact"], "sft"))
    with caplog.at_level(logging.WARNING):
        message = warn_prompt_wording(tmp_path, ["wise-train"])
    assert message and "official wording" in message and "compact one (wise-train-compact)" in message
    assert message in caplog.text
    assert warn_prompt_wording(tmp_path, ["wise-train-compact"]) is None
    assert warn_prompt_wording(ROOT / "wise_rl/assets/shapeworld-base", ["wise-train"]) is None  # answer-only base


# ---- 6. verbs take the recipes' arguments ------------------------------------------------------------------------
def test_train_verbs_take_config_like_the_recipes(capsys, monkeypatch):
    monkeypatch.delenv("WISE_RL_TRACEBACK", raising=False)
    assert cli.main(["sft", "--config", TINY_SFT, "--max_stpes", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("error: --max_stpes: unknown option; did you mean --max_steps?")
    from wise_rl.commands.train import recipe_argv

    assert recipe_argv([TINY_SFT, "--max_steps", "2"]) == ["--config", TINY_SFT, "--max_steps", "2"]


@pytest.mark.parametrize(("verb", "own", "other"), [("sft", "recipes/tiny/sft.yaml", "grpo.yaml"),
                                                     ("grpo", "recipes/tiny/grpo.yaml", "sft.yaml")])
def test_each_train_verb_help_shows_its_own_example(verb, own, other):
    help_text = cli.build_parser(verb).verb_parsers[verb].format_help()
    assert f"wise-rl {verb} --config {own}" in help_text and other not in help_text


def test_a_typo_in_a_verb_flag_prints_that_verb_usage(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--out", "x", "--modle", "m"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: wise-rl eval")
    assert "unrecognized arguments: --modle m (did you mean --model?)" in err and "VERB" not in err
    with pytest.raises(SystemExit):
        cli.main(["eval", "--out", "x", "--zzzzzz"])
    assert "unrecognized arguments: --zzzzzz\n" in capsys.readouterr().err  # nothing close: no guess


# ---- 7. ZeRO-3 reports the real parameter counts ----------------------------------------------------------------
def test_parameter_counts_under_zero3_partitioning_are_the_real_ones():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    sizes = [p.numel() for p in model.parameters()]  # 12, 3, 6, 2
    for p in model.parameters():  # what ZeRO-3 leaves on each process: an empty tensor and the real size aside
        p.ds_numel = p.numel()
        p.data = torch.empty(0)
    model[1].weight.requires_grad_(False)
    info = training.describe_model(model)
    assert info["total_params"] == sum(sizes) == 23 and info["trainable_params"] == 23 - 6


def test_lines_every_process_would_print_alike_come_from_the_first_only(monkeypatch, caplog, tiny_model_dir):
    wrapped = training_rewards.with_length_diagnostics(lambda **kw: [0.0] * len(kw["completions"]), None,
                                                       "three-stage", ["format"])
    monkeypatch.setenv("RANK", "1")
    with caplog.at_level(logging.WARNING):
        wrapped(completions=[CUT] * 4, completion_ids=[[5] * 64] * 4)
        args = training.parse_sft_args(["--config", TINY_SFT, "--model_name_or_path", str(tiny_model_dir)])
        assert apply_recipe_threads(args)["threads"] == 1  # chosen (a tiny model), just not announced
    assert "were cut" not in caplog.text and "precision:" not in caplog.text and "threads:" not in caplog.text
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(precision, "_LOGGED", set())  # said once per process: this test's process may have said it
    with caplog.at_level(logging.WARNING):
        training.parse_sft_args(["--config", TINY_SFT, "--model_name_or_path", str(tiny_model_dir)])
    assert "precision:" in caplog.text


def test_a_deepspeed_launch_says_before_its_silent_engine_build(monkeypatch, caplog):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)  # a GPU launch: nothing to initialise here
    monkeypatch.delenv("RANK", raising=False)
    with caplog.at_level(logging.INFO, logger="wise_rl.training.model"):
        training.maybe_init_cpu_deepspeed()
    assert "DeepSpeed: the engine is built when training starts" in caplog.text
    caplog.clear()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    with caplog.at_level(logging.INFO, logger="wise_rl.training.model"):
        training.maybe_init_cpu_deepspeed()
    assert "DeepSpeed" not in caplog.text


def test_build_sft_compress_without_detailed_rationales_is_one_line(shapeworld_dir, tmp_path, monkeypatch, capsys):
    import sys

    from datasets import load_from_disk

    source = tmp_path / "no-detailed"
    load_from_disk(str(shapeworld_dir)).remove_columns(["detailed", "concise"]).save_to_disk(str(source))
    monkeypatch.setattr(sys, "argv", ["wise-rl", "build-sft", "--mode", "compress", "--source", str(source),
                                      "--split", "train", "--limit", "4", "--out", str(tmp_path / "out")])
    monkeypatch.delenv("WISE_RL_TRACEBACK", raising=False)
    capsys.readouterr()  # the fixture's own save_to_disk bars
    assert cli.entry() == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "examples/s]" not in line]
    assert len(err) == 1 and err[0].startswith("wise-rl build-sft: error: --mode compress --source ")
    assert "4 row(s) have no detailed rationale to compress" in err[0]


@pytest.mark.parametrize("verb", ["sft", "grpo"])
def test_a_train_verb_error_names_the_verb_the_user_typed(verb, capsys):
    assert cli.main([verb, "--config", str(ROOT / f"recipes/tiny/{verb}.yaml"), "--learnig_rate", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"wise-rl {verb}: error: ") and "learning_rate" in err[0]
