"""A crash loses nothing: SFT and GRPO killed at three moments and re-run end with the weights of an uninterrupted run.

Moments (max_steps 4, a checkpoint every 2 steps):

* ``mid-step``: killed inside step 3 (after checkpoint-2) — the re-run resumes from checkpoint-2;
* ``mid-save``: killed while writing checkpoint-4, leaving an empty ``trainer_state.json`` — the re-run sets it
  aside and resumes from checkpoint-2;
* ``after-last``: killed after checkpoint-4, before the final model is written — the re-run saves checkpoint-4 as
  the final model without training a fifth step.

The kill is a ``BaseException`` raised in-process at that moment (no ``except Exception`` of the stack can swallow
it); one test kills a real process with ``os._exit`` mid-save. Weights are compared to the uninterrupted run of the
same seed: before the resume fix a resumed full fine-tune ended 4.7e-2 (SFT) / 5.0e-2 (GRPO) away in max abs.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from rewards import register_reward
from wise_rl import formats, training
from wise_rl.training import checkpoints

ROOT = Path(__file__).resolve().parents[2]
LORA = ("--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0")


@register_reward("test_completion_chars")
def completion_chars(completions, **kwargs):
    """Varies across the random tiny model's samples, so GRPO advantages (and gradients) are not zero."""
    return [len(formats.completion_text(c)) / 32.0 for c in completions]


def argv(kind: str, model_dir, data_dir, out, *extra) -> list[str]:
    common = ["--model_name_or_path", str(model_dir), "--dataset", str(data_dir), "--dataset_split", "train",
              "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0", "--logging_steps", "1",
              "--max_steps", "4", "--save_steps", "2", "--save_total_limit", "2", "--learning_rate", "1e-2"]
    if kind == "sft":
        return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), *common, "--dataset_limit", "16",
                "--per_device_train_batch_size", "2", *extra]
    return ["--config", str(ROOT / "recipes/tiny/grpo.yaml"), *common, "--dataset_limit", "8",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--num_generations", "4",
            "--max_completion_length", "8", "--reward_funcs", "test_completion_chars", "--reward_weights", "1.0",
            "--weight_decay", "0.0", *extra]


def run(kind: str, args: list[str]) -> dict:
    parse = training.parse_sft_args if kind == "sft" else training.parse_grpo_args
    return importlib.import_module(f"wise_rl.scripts.{kind}").main(*parse(args))


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the training stack catches a BaseException that is not an Exception."""


def kill_at(monkeypatch, moment: str) -> None:
    if moment == "mid-step":  # inside step 3: after checkpoint-2, before the optimizer step of step 3
        original = transformers.Trainer.training_step

        def training_step(self, *args, **kwargs):
            if self.state.global_step == 2:
                raise Killed
            return original(self, *args, **kwargs)

        monkeypatch.setattr(transformers.Trainer, "training_step", training_step)
    elif moment == "mid-save":  # checkpoint-4: weights and optimizer written, trainer_state.json created empty
        original = transformers.TrainerState.save_to_json

        def save_to_json(self, path):
            if Path(path).parent.name != "checkpoint-4":
                return original(self, path)
            Path(path).write_text("")
            raise Killed

        monkeypatch.setattr(transformers.TrainerState, "save_to_json", save_to_json)
    elif moment == "after-last":  # checkpoint-4 complete, the final model not yet written
        def save_final(*args, **kwargs):
            raise Killed

        monkeypatch.setattr(training, "save_final", save_final)
    else:
        raise ValueError(moment)


def weights(out: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (out / "adapter_model.safetensors").is_file() else "model.safetensors"
    return load_file(str(out / name))


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, shapeworld_dir, tmp_path_factory):
    """Final weights of uninterrupted runs, by (kind, lora)."""
    found = {}
    for kind, lora in (("sft", False), ("grpo", False), ("sft", True), ("grpo", True)):
        out = tmp_path_factory.mktemp(f"whole-{kind}-{lora}")
        summary = run(kind, argv(kind, tiny_model_dir, shapeworld_dir, out, *(LORA if lora else ())))
        assert summary["global_step"] == 4 and summary["resumed_from"] is None
        found[kind, lora] = weights(out)
    return found


CASES = [(kind, False, moment) for kind in ("sft", "grpo") for moment in ("mid-step", "mid-save", "after-last")]
CASES += [("sft", True, "mid-step"), ("grpo", True, "mid-save"), ("sft", True, "after-last")]


@pytest.mark.parametrize(("kind", "lora", "moment"), CASES, ids=lambda v: {True: "lora", False: "full"}.get(v, v))
def test_killed_and_rerun_ends_with_the_uninterrupted_weights(kind, lora, moment, uninterrupted, tiny_model_dir,
                                                               shapeworld_dir, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    args = argv(kind, tiny_model_dir, shapeworld_dir, out, *(LORA if lora else ()))
    with monkeypatch.context() as m:
        kill_at(m, moment)
        with pytest.raises(Killed):
            run(kind, args)
    assert not (out / checkpoints.DONE_FILE).exists()

    with caplog.at_level("WARNING"):
        summary = run(kind, args)  # the same command again
    assert "missing keys" not in caplog.text
    expected_from = {"mid-step": "checkpoint-2", "mid-save": "checkpoint-2", "after-last": "checkpoint-4"}[moment]
    assert summary["resumed_from"] == str(out / expected_from)
    assert summary["global_step"] == 4
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    if moment == "mid-save":
        assert [p.name.split(".")[0] for p in (out / "incomplete").iterdir()] == ["checkpoint-4"]
    diff = max_abs_diff(weights(out), uninterrupted[kind, lora])
    moved = max_abs_diff(uninterrupted[kind, lora], weights(out / expected_from)) if moment != "after-last" else 1
    assert moved > 1e-3, "the steps after the checkpoint did not change the weights: the test would prove nothing"
    assert diff <= 1e-6, f"{kind} {'lora' if lora else 'full'} killed {moment}: max |w - w_uninterrupted| = {diff}"


def test_resume_loads_every_parameter_of_the_checkpoint(tiny_model_dir, shapeworld_dir, tmp_path):
    """After ``_load_from_checkpoint`` the model's parameters are the checkpoint's, not the initial ones."""
    from trl import SFTTrainer

    from wise_rl.models import load_model

    out = tmp_path / "run"
    script_args, training_args, model_args = training.parse_sft_args(
        argv("sft", tiny_model_dir, shapeworld_dir, out, "--max_steps", "2"))
    run("sft", argv("sft", tiny_model_dir, shapeworld_dir, out, "--max_steps", "2"))
    ckpt = out / "checkpoint-2"
    saved = load_model(ckpt, dtype="float32").state_dict()
    initial = load_model(tiny_model_dir, dtype="float32")
    trainer = SFTTrainer(model=initial, args=training_args, train_dataset=training.sft_rows(
        training.load_training_dataset(script_args), "wise-train"),
        processing_class=training.build_processor(script_args, model_args))
    checkpoints.restore_weights_on_resume(trainer)
    trainer._load_from_checkpoint(str(ckpt))
    got = trainer.model.state_dict()
    assert got.keys() == saved.keys()
    assert max((got[k] - saved[k]).abs().max().item() for k in got) == 0.0
    start = load_model(tiny_model_dir, dtype="float32").state_dict()
    assert max((got[k] - start[k]).abs().max().item() for k in got) > 1e-3


def test_a_checkpoint_of_another_model_is_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import save_file

    from wise_rl.models import load_model

    model = load_model(tiny_model_dir, dtype="float32")
    state = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    dropped = next(k for k in sorted(state) if k.startswith("visual."))
    del state[dropped]
    (tmp_path / "ckpt").mkdir()
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(checkpoints.CheckpointError, match="1 missing"):
        checkpoints.load_checkpoint_weights(model, tmp_path / "ckpt")


def test_a_finished_run_is_left_alone_and_extends_or_starts_over_on_request(tiny_model_dir, shapeworld_dir,
                                                                             tmp_path, caplog):
    out = tmp_path / "run"
    args = argv("sft", tiny_model_dir, shapeworld_dir, out)
    assert run("sft", args)["global_step"] == 4
    final = weights(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-2", "checkpoint-4"]

    for _ in range(2):  # re-running twice changes nothing
        with caplog.at_level("WARNING"):
            summary = run("sft", args)
        assert summary == {"global_step": 4, "resumed_from": None, "finished": True}
        assert "already holds a finished run (step 4)" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == stamps
    assert max_abs_diff(weights(out), final) == 0.0

    extended = run("sft", args + ["--max_steps", "6"])
    assert extended["resumed_from"] == str(out / "checkpoint-4") and extended["global_step"] == 6
    assert json.loads((out / checkpoints.DONE_FILE).read_text())["global_step"] == 6

    fresh = run("sft", args + ["--resume", "false", "--max_steps", "2"])
    assert fresh["resumed_from"] is None and fresh["global_step"] == 2
    previous = list(out.glob("previous-*"))
    assert len(previous) == 1
    assert sorted(p.name for p in previous[0].iterdir()) == ["DONE", "checkpoint-4", "checkpoint-6",
                                                                "run_identity.json"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


KILL_MID_SAVE = """
import os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)  # as in the test process (tests/conftest.py): the same reduction order, the same floats
import transformers
def save_to_json(self, path):
    if Path(path).parent.name == "checkpoint-4":
        Path(path).write_text('{"global_st')  # half a file, then the process dies at once
        os._exit(9)
    return ORIGINAL(self, path)
ORIGINAL = transformers.TrainerState.save_to_json
transformers.TrainerState.save_to_json = save_to_json
from wise_rl import training
from wise_rl.scripts import sft
sft.main(*training.parse_sft_args(sys.argv[1:]))
"""


def test_a_process_killed_mid_save_resumes_with_the_same_weights(uninterrupted, tiny_model_dir, shapeworld_dir,
                                                                  tmp_path):
    out = tmp_path / "run"
    args = argv("sft", tiny_model_dir, shapeworld_dir, out)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", KILL_MID_SAVE, *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (out / "checkpoint-4" / "trainer_state.json").read_text() == '{"global_st'
    summary = run("sft", args)
    assert summary["resumed_from"] == str(out / "checkpoint-2") and summary["global_step"] == 4
    assert max_abs_diff(weights(out), uninterrupted["sft", False]) <= 1e-5
