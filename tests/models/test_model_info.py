"""How a trained model wants to be prompted: recorded by the recipes, used and checked by eval / infer."""

from __future__ import annotations

import json
import shutil

import pytest

from wise_rl.cli import main
from wise_rl.errors import UsageError
from wise_rl.models import info as model_info


@pytest.mark.parametrize("templates, recipe, expected", [
    (["wise-train"], "grpo", ("wise", "official", "wise", "wise-s")),
    (["wise-train-compact"], "grpo", ("wise", "compact", "wise-compact", "wise-s-compact")),
    (["wise-train-compact", "wise-s-compact"], "sft", ("wise", "compact", "wise-compact", "wise-s-compact")),
    (["verbose-compact"], "sft", ("verbose", "compact", "verbose-compact", "verbose-compact")),
    (["answer-only"], "sft", ("answer", "official", "answer-only", "answer-only")),
])
def test_training_record(templates, recipe, expected):
    rec = model_info.training_record(templates, recipe)
    assert (rec["target_mode"], rec["prompt_style"], rec["eval_prompt"], rec["infer_prompt"]) == expected
    assert rec["prompt_templates"] == templates and rec["recipe"] == recipe


def test_templates_asking_for_different_targets_are_refused():
    with pytest.raises(ValueError, match="different targets"):
        model_info.training_record(["wise-train", "verbose"], "sft")


def test_resolve_prompt_defaults_and_warnings(tmp_path):
    # no record: the commands' historical defaults, no warning
    assert model_info.resolve_prompt(tmp_path, None, "eval") == ("wise", None)
    assert model_info.resolve_prompt(tmp_path, None, "infer") == ("wise-s", None)
    model_info.write(tmp_path, model_info.training_record(["wise-train-compact"], "grpo"))
    assert model_info.resolve_prompt(tmp_path, None, "eval") == ("wise-compact", None)
    assert model_info.resolve_prompt(tmp_path, None, "infer") == ("wise-s-compact", None)
    # a checkpoint folder reads its run's record
    assert model_info.resolve_prompt(tmp_path / "checkpoint-4", None, "eval") == ("wise-compact", None)
    assert model_info.resolve_prompt(tmp_path, "wise-s-compact", "eval") == ("wise-s-compact", None)
    prompt, warning = model_info.resolve_prompt(tmp_path, "verbose", "eval")
    assert prompt == "verbose"  # an explicit prompt is kept ...
    assert "asks for a 'verbose' completion, the model was trained on 'wise'" in warning  # ... and warned about
    assert "official wording, the model learnt the compact one" in warning
    assert warning.endswith("--prompt wise-compact matches its training")
    # answer-only is one wording for both styles, and asks for no rationale: no warning
    assert model_info.resolve_prompt(tmp_path, "answer-only", "eval") == ("answer-only", None)


def test_eval_uses_the_recorded_prompt_and_warns_on_a_mismatch(tmp_path, tiny_model_dir, shapeworld_dir, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    model_info.write(model, model_info.training_record(["wise-train-compact"], "grpo"))
    common = ["--dataset", str(shapeworld_dir), "--split", "test", "--limit", "2", "--max-new-tokens", "4", "--quiet"]
    assert main(["eval", "--model", str(model), "--out", str(tmp_path / "a"), *common]) == 0
    captured = capsys.readouterr()
    assert f"prompt: wise-compact (from {model / 'wise_rl.json'})" in captured.out
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["settings"]["prompt"] == "wise-compact"
    assert main(["eval", "--model", str(model), "--prompt", "verbose", "--out", str(tmp_path / "b"), *common]) == 0
    assert "wise-rl eval: warning: --prompt verbose asks for a 'verbose' completion" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--shard", "2/2"], "--shard must be i/n with 0 <= i < n"),
    (["--compare", "NOWHERE"], "--compare NOWHERE: no metrics.json there"),
    (["--mask-decoder", "sam2"], "--mask-decoder sam2 needs --sam2"),
])
def test_eval_argument_mistakes_fail_before_any_work(tmp_path, shapeworld_dir, extra, message, monkeypatch):
    import wise_rl.evaluate as evaluate

    monkeypatch.setattr(evaluate, "run_eval", lambda *a, **k: pytest.fail("run_eval reached"))
    with pytest.raises(UsageError, match=message):
        main(["eval", "--model", str(tmp_path), "--dataset", str(shapeworld_dir), "--out", str(tmp_path / "o"),
              *extra])


def test_eval_into_a_folder_holding_another_prompt_fails_before_any_work(tmp_path, shapeworld_dir, monkeypatch):
    import wise_rl.evaluate as evaluate

    out = tmp_path / "o"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": str(tmp_path), "dataset": str(shapeworld_dir), "prompt": "wise"}))
    monkeypatch.setattr(evaluate, "run_eval", lambda *a, **k: pytest.fail("run_eval reached"))
    with pytest.raises(UsageError, match="holds a run with prompt='wise', but this run has prompt='verbose'"):
        main(["eval", "--model", str(tmp_path), "--dataset", str(shapeworld_dir), "--out", str(out),
              "--prompt", "verbose"])
    with pytest.raises(UsageError, match="--dataset nowhere/at/all: no such file or folder"):
        main(["eval", "--model", str(tmp_path), "--dataset", "nowhere/at/all", "--out", str(tmp_path / "x")])
