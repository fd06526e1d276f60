"""SIGTERM (a preemption) and SIGINT: the current optimizer step ends, ``checkpoint-N`` is saved, the process says
where and exits 143 / 130; the same command resumes and ends with the uninterrupted run's weights, no step lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rewards import register_reward
from wise_rl import formats, training

ROOT = Path(__file__).resolve().parents[2]
REWARD = "test_preempt_completion_chars"


@register_reward(REWARD)
def completion_chars(completions, **kwargs):
    """Varies across the random tiny model's samples, so GRPO advantages (and gradients) are not zero."""
    return [len(formats.completion_text(c)) / 32.0 for c in completions]


def argv(kind: str, model_dir, data_dir, out) -> list[str]:
    common = ["--model_name_or_path", str(model_dir), "--dataset", str(data_dir), "--dataset_split", "train",
              "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0", "--logging_steps", "1",
              "--max_steps", "4", "--save_steps", "100", "--learning_rate", "1e-2"]
    if kind == "sft":
        return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), *common, "--dataset_limit", "16",
                "--per_device_train_batch_size", "2"]
    return ["--config", str(ROOT / "recipes/tiny/grpo.yaml"), *common, "--dataset_limit", "8",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--num_generations", "4",
            "--max_completion_length", "8", "--reward_funcs", REWARD, "--reward_weights", "1.0",
            "--weight_decay", "0.0"]


def run(kind: str, args: list[str]) -> dict:
    import importlib

    parse = training.parse_sft_args if kind == "sft" else training.parse_grpo_args
    return importlib.import_module(f"wise_rl.scripts.{kind}").main(*parse(args))


# The child sends itself the signal inside step 3 (after 2 optimizer steps): a real signal, mid-step.
SIGNAL_MID_STEP = """
import os, signal, sys
import torch
torch.set_num_threads(1)  # as in the test process (tests/conftest.py): the same reduction order, the same floats
import transformers
sys.path.insert(0, {tests!r})
import test_preemption  # registers the reward
ORIGINAL = transformers.Trainer.training_step
def training_step(self, *args, **kwargs):
    if self.state.global_step == 2 and not getattr(self, "_signalled", False):
        self._signalled = True
        os.kill(os.getpid(), signal.{sig})
        if {twice}:
            os.kill(os.getpid(), signal.{sig})
    return ORIGINAL(self, *args, **kwargs)
transformers.Trainer.training_step = training_step
from wise_rl import training
from wise_rl.scripts import {kind}
parse = training.parse_sft_args if {kind!r} == "sft" else training.parse_grpo_args
sys.exit(training.run_from_command_line({kind}.main, lambda: parse(sys.argv[1:]), "recipe"))
"""


def signalled(kind: str, args: list[str], cwd: Path, sig: str = "SIGTERM", twice: bool = False):
    code = SIGNAL_MID_STEP.format(tests=str(Path(__file__).parent), sig=sig, kind=kind, twice=twice)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def weights(out: Path) -> dict:
    return load_file(str(out / "model.safetensors"))


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_sigterm_mid_step_saves_a_checkpoint_and_the_rerun_ends_as_the_uninterrupted_run(
        kind, tiny_model_dir, shapeworld_dir, tmp_path):
    whole = tmp_path / "whole"
    run(kind, argv(kind, tiny_model_dir, shapeworld_dir, whole))
    out = tmp_path / "run"
    args = argv(kind, tiny_model_dir, shapeworld_dir, out)
    proc = signalled(kind, args, tmp_path)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert f"interrupted at step 3; checkpoint-3 saved in {out}; re-run the same command to resume" in proc.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # save_steps 100: only the signal's
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3
    assert not (out / "DONE").exists() and not (out / "model.safetensors").exists()
    assert "Traceback" not in proc.stderr

    summary = run(kind, args)  # the same command again
    assert summary["resumed_from"] == str(out / "checkpoint-3") and summary["global_step"] == 4
    state = json.loads((out / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4]  # no step lost or repeated
    got, want = weights(out), weights(whole)
    start = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert max((want[k] - start[k]).abs().max().item() for k in want if k in start) > 1e-3
    assert max((got[k] - want[k]).abs().max().item() for k in want) == 0.0


def test_a_second_signal_exits_at_once_and_sigint_is_130(tiny_model_dir, shapeworld_dir, tmp_path):
    out = tmp_path / "run"
    proc = signalled("sft", argv("sft", tiny_model_dir, shapeworld_dir, out), tmp_path, sig="SIGINT", twice=True)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "interrupted at step" not in proc.stderr and not list(out.glob("checkpoint-*"))
    proc = signalled("sft", argv("sft", tiny_model_dir, shapeworld_dir, out), tmp_path, sig="SIGINT")
    assert proc.returncode == 130 and (out / "checkpoint-3").is_dir(), proc.stderr[-3000:]


def test_grpo_stops_at_the_end_of_a_reused_generation_batch(tiny_model_dir, shapeworld_dir, tmp_path):
    from transformers import TrainerControl, TrainerState

    from wise_rl.training import preemption

    s, t, m = training.parse_grpo_args(argv("grpo", tiny_model_dir, shapeworld_dir, tmp_path) + [
        "--num_iterations", "2", "--gradient_accumulation_steps", "2", "--steps_per_generation", "2"])
    assert preemption.exact_stop_every(t) == 2  # 2 micro-batches × 2 iterations = 4 micro-batches = 2 steps
    s2, t2, _ = training.parse_sft_args(argv("sft", tiny_model_dir, shapeworld_dir, tmp_path))
    assert preemption.exact_stop_every(t2) == 1
    callback = preemption.PreemptionCallback(every=2)
    callback.signum = 15
    state, control = TrainerState(), TrainerControl()
    state.global_step = 3
    callback.on_step_end(t, state, control)
    assert not control.should_save and callback.stopped_at is None  # inside the cycle: not yet
    state.global_step = 4
    callback.on_step_end(t, state, control)
    assert control.should_save and control.should_training_stop and callback.stopped_at == 4
