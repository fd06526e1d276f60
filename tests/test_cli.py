"""The ``wise-rl`` entry point: --help and argument errors answer without importing the training stack; user
errors are one line; ``wise-rl rewards`` lists the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wise_rl import cli, metrics
from wise_rl.commands import PROTOCOLS

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "trl", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("verb", [None, *cli.COMMANDS])
def test_building_the_parser_imports_no_training_stack(verb):
    code = (f"import sys, json; from wise_rl import cli; cli.build_parser({verb!r}); "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_help_and_argument_errors_through_the_console_entry():
    proc = _python("import sys; sys.argv = ['wise-rl', '--help']; from wise_rl import cli; cli.entry()")
    assert proc.returncode == 0 and "rewards" in proc.stdout and "eval" in proc.stdout
    proc = _python("import sys; sys.argv = ['wise-rl', 'eval', '--out', 'x', '--nope']; from wise_rl import cli; cli.entry()")
    assert proc.returncode == 2 and "unrecognized arguments: --nope" in proc.stderr


def test_protocol_choices_match_the_metrics_module():
    assert PROTOCOLS == metrics.PROTOCOLS


def test_user_error_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["wise-rl", "report", str(tmp_path / "absent")])
    monkeypatch.delenv("WISE_RL_TRACEBACK", raising=False)
    assert cli.entry() == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wise-rl report: error: ") and "\n" not in err


def test_rewards_verb_lists_the_registry(capsys):
    from rewards import available_rewards

    assert cli.main(["rewards", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == available_rewards()
    by_name = {i["name"]: i for i in infos}
    assert "threshold" in by_name["bbox_iou"]["options"] and by_name["format"]["options"] == []
    assert all(i["summary"] for i in infos)
    assert cli.main(["rewards"]) == 0
    table = capsys.readouterr().out
    assert "* self_distillation" in table and "reward_funcs" in table


def test_rewards_verb_stars_exactly_what_the_default_recipe_uses(capsys):
    """One WISE reward list: the GRPO recipes' default reward_funcs, the demo's and the tiny recipe's YAML, and the
    starred rows of ``wise-rl rewards`` are the same names (``mask_iou`` is an extra, not starred)."""
    import yaml

    from rewards import WISE_REWARDS
    from wise_rl.training.script_args import GRPOScriptArguments

    assert GRPOScriptArguments().reward_funcs == list(WISE_REWARDS) and "mask_iou" not in WISE_REWARDS
    for recipe in ("recipes/tiny/grpo.yaml", "recipes/demo/grpo_wise.yaml", "recipes/presets/wise-paper.yaml"):
        assert yaml.safe_load((ROOT / recipe).read_text())["reward_funcs"] == list(WISE_REWARDS), recipe
    assert cli.main(["rewards"]) == 0
    from rewards import available_rewards

    rows = {line[2:].split()[0]: line[0] for line in capsys.readouterr().out.splitlines()
            if line[:2] in ("* ", "  ") and line[2:].split() and line[2:].split()[0] in available_rewards()}
    assert sorted(name for name, mark in rows.items() if mark == "*") == sorted(WISE_REWARDS)
    assert rows["mask_iou"] == " "  # listed, not starred


def test_a_bad_predictions_line_is_one_line(monkeypatch, capsys, tmp_path, shapeworld_dir):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "a", "completion": "x"}\nnot json\n')
    monkeypatch.setattr(sys, "argv", ["wise-rl", "score", "--dataset", str(shapeworld_dir), "--split", "test",
                                      "--predictions", str(preds), "--out", str(tmp_path / "m.json"), "--quiet"])
    monkeypatch.delenv("WISE_RL_TRACEBACK", raising=False)
    assert cli.entry() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wise-rl score: error: ") and "line 2: not JSON" in err[0]
