"""A run is what it says it is: one writer per output_dir, resumes and re-runs that refuse another run (each
difference named), markers checked against the weights they describe, corrupt model folders named in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from wise_rl import outdir, training
from wise_rl.errors import ModelFolderError, RunIdentityError
from wise_rl.models import folder_check
from wise_rl.training import checkpoints, identity

ROOT = Path(__file__).resolve().parents[2]
LORA = ("--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0")


def sft_argv(model_dir, data_dir, out, *extra) -> list[str]:
    return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(model_dir),
            "--dataset", str(data_dir), "--dataset_split", "train", "--dataset_limit", "8",
            "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0", "--logging_steps", "1",
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--max_steps", "2", "--save_steps", "1",
            *extra]


def sft(args: list[str]) -> dict:
    from wise_rl.scripts import sft as script

    return script.main(*training.parse_sft_args(args))


def perturbed_copy(model_dir, dest: Path) -> Path:
    """The same architecture and shapes with other weights (a different base of the same shapes)."""
    shutil.copytree(model_dir, dest)
    state = load_file(str(dest / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name] + 0.01
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
HOLD = textwrap.dedent("""
    import sys
    from wise_rl.outdir import hold_folder
    with hold_folder(sys.argv[1], "wise-rl sft"):
        print("held", flush=True)
        sys.stdin.readline()
""")


# ---- one writer per output folder ---------------------------------------------------------------------------------
def test_a_second_training_on_a_held_output_dir_is_refused_naming_the_holder(tiny_model_dir, shapeworld_dir,
                                                                             tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(outdir.FolderLockedError,
                           match=rf"in use by wise-rl sft \(pid {holder.pid} on .*, since .*, command: "):
            sft(sft_argv(tiny_model_dir, shapeworld_dir, out))
        assert not list(out.glob("checkpoint-*")) and not (out / "run_identity.json").exists()
    finally:
        holder.communicate("\n", timeout=60)


def test_a_stale_lock_of_a_killed_run_is_taken_over_with_a_message(tmp_path, caplog):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=ENV)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=60)
    with caplog.at_level("WARNING"), outdir.hold_folder(out, "wise-rl grpo"):
        assert json.loads((out / outdir.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of wise-rl sft (pid {holder.pid}" in caplog.text
    assert "that process is gone" in caplog.text


# ---- identity ----------------------------------------------------------------------------------------------------
def test_identity_names_what_changes_the_result_and_not_the_step_count(tiny_model_dir, shapeworld_dir, tmp_path):
    def ident(*extra):
        s, t, m = training.parse_sft_args(sft_argv(tiny_model_dir, shapeworld_dir, tmp_path, *extra))
        return identity.run_identity(s, t, m, training.load_training_dataset(s))

    base = ident()
    assert base["base_weights"] == folder_check.weights_digest(tiny_model_dir) and base["dataset_fingerprint"]
    assert identity.differences(base, ident("--max_steps", "9", "--save_steps", "3", "--logging_steps", "2")) == []
    diffs = identity.differences(base, ident("--learning_rate", "2e-2", "--dataset_limit", "6", *LORA))
    names = [d.split(":")[0] for d in diffs]
    assert names == ["dataset_fingerprint", "dataset_limit", "learning_rate", "lora_alpha", "lora_dropout", "lora_r",
                     "use_peft"]
    assert "learning_rate: 0.01 → 0.02" in diffs


def test_a_lora_run_resumed_with_another_lora_r_is_refused_naming_lora_r(tiny_model_dir, shapeworld_dir, tmp_path):
    out = tmp_path / "run"
    sft(sft_argv(tiny_model_dir, shapeworld_dir, out, *LORA))
    shutil.rmtree(out / "checkpoint-2")
    (out / checkpoints.DONE_FILE).unlink()  # as if stopped after checkpoint-1
    with pytest.raises(RunIdentityError, match=r"checkpoint-1 holds another run .*lora_r: 4 → 8") as info:
        sft(sft_argv(tiny_model_dir, shapeworld_dir, out, *LORA, "--lora_r", "8"))
    assert "\n" not in str(info.value) and "--resume false" in str(info.value)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]  # nothing was trained or moved


def test_a_resume_on_another_base_of_the_same_shapes_is_refused(tiny_model_dir, shapeworld_dir, tmp_path):
    out = tmp_path / "run"
    sft(sft_argv(tiny_model_dir, shapeworld_dir, out, "--max_steps", "1"))
    other = perturbed_copy(tiny_model_dir, tmp_path / "other-base")
    with pytest.raises(RunIdentityError, match=r"DONE holds another run .*base_weights: .*model_name_or_path: "):
        sft(sft_argv(other, shapeworld_dir, out))
    # the same path holding retrained weights is another base too
    moved = tmp_path / "base"
    shutil.copytree(tiny_model_dir, moved)
    out2 = tmp_path / "run2"
    sft(sft_argv(moved, shapeworld_dir, out2, "--max_steps", "1"))
    perturbed_copy(tiny_model_dir, tmp_path / "tmp-base")
    shutil.copyfile(tmp_path / "tmp-base" / "model.safetensors", moved / "model.safetensors")
    with pytest.raises(RunIdentityError) as info:
        sft(sft_argv(moved, shapeworld_dir, out2))
    assert "base_weights:" in str(info.value) and "model_name_or_path" not in str(info.value)


def test_a_finished_run_rerun_or_extended_with_another_lr_or_dataset_is_refused(tiny_model_dir, shapeworld_dir,
                                                                                tmp_path, caplog):
    out = tmp_path / "run"
    args = sft_argv(tiny_model_dir, shapeworld_dir, out)
    assert sft(args)["global_step"] == 2
    with pytest.raises(RunIdentityError, match=r"DONE holds another run .*learning_rate: 0.01 → 0.05"):
        sft(args + ["--learning_rate", "5e-2"])  # re-run: not "nothing to do"
    with pytest.raises(RunIdentityError, match=r"learning_rate: 0.01 → 0.05"):
        sft(args + ["--learning_rate", "5e-2", "--max_steps", "3"])  # extension: the new lr is not dropped
    with pytest.raises(RunIdentityError, match=r"dataset_fingerprint: .* dataset_limit: 8 → 6"):
        sft(args + ["--dataset_limit", "6", "--max_steps", "3"])
    extended = sft(args + ["--max_steps", "3"])  # more steps: the one safe change
    assert extended["global_step"] == 3 and extended["resumed_from"] == str(out / "checkpoint-2")
    fresh = sft(args + ["--learning_rate", "5e-2", "--resume", "false"])  # start over: says what it means
    assert fresh["resumed_from"] is None
    assert json.loads((out / "run_identity.json").read_text())["learning_rate"] == 0.05
    done = json.loads((out / checkpoints.DONE_FILE).read_text())
    assert done["identity"]["learning_rate"] == 0.05
    assert json.loads((out / "checkpoint-2" / "run_identity.json").read_text())["learning_rate"] == 0.05


# ---- markers -----------------------------------------------------------------------------------------------------
def test_a_done_marker_that_does_not_match_the_weights_is_stale_and_the_run_resumes(tiny_model_dir, shapeworld_dir,
                                                                                   tmp_path, caplog):
    out = tmp_path / "run"
    args = sft_argv(tiny_model_dir, shapeworld_dir, out)
    sft(args)
    done = json.loads((out / checkpoints.DONE_FILE).read_text())
    assert done["weights_digest"] == folder_check.weights_digest(out)
    record = json.loads((out / "wise_rl.json").read_text())
    assert record["weights_digest"] == done["weights_digest"]
    # an extension killed in its final save: the new model is written, DONE still describes the old one
    shutil.copyfile(out / "checkpoint-1" / "model.safetensors", out / "model.safetensors")
    with caplog.at_level("WARNING"):
        summary = sft(args)
    assert "DONE is stale" in caplog.text
    assert summary.get("finished") is None and summary["resumed_from"] == str(out / "checkpoint-2")
    assert json.loads((out / checkpoints.DONE_FILE).read_text())["weights_digest"] == folder_check.weights_digest(out)
    assert load_file(str(out / "model.safetensors")).keys() == load_file(
        str(out / "checkpoint-2" / "model.safetensors")).keys()
    assert folder_check.weights_digest(out) != folder_check.weights_digest(out / "checkpoint-1")


# ---- corrupt model folders ---------------------------------------------------------------------------------------
def _truncated(model_dir, dest):
    shutil.copytree(model_dir, dest)
    data = (dest / "model.safetensors").read_bytes()
    (dest / "model.safetensors").write_bytes(data[: len(data) // 3])


def _bad_config(model_dir, dest):
    shutil.copytree(model_dir, dest)
    text = (dest / "config.json").read_text()
    (dest / "config.json").write_text(text.replace(",", "", 1))


@pytest.mark.parametrize(("damage", "message"), [
    (_truncated, r"model.safetensors is truncated"),
    (_bad_config, r"config.json: not valid JSON \(Expecting"),
], ids=["truncated-weights", "config-not-json"])
def test_a_corrupt_base_model_is_one_line_naming_the_file(damage, message, tiny_model_dir, shapeworld_dir,
                                                            tmp_path, capsys):
    base = tmp_path / "base"
    damage(tiny_model_dir, base)
    with pytest.raises(ModelFolderError, match=message) as info:
        folder_check.check_model_folder(base)
    assert str(base) in str(info.value) and "\n" not in str(info.value)
    from wise_rl.scripts import sft as script

    assert script.cli(sft_argv(base, shapeworld_dir, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("recipes/sft.py: error: model_name_or_path ") and "Traceback" not in err[0]
    assert str(base) in err[0]
    from wise_rl.cli import main as cli

    with pytest.raises(ModelFolderError, match=message):
        cli(["eval", "--model", str(base), "--dataset", str(shapeworld_dir), "--out", str(tmp_path / "eval")])


def test_a_sharded_model_with_a_missing_shard_is_named(tiny_model_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ModelFolderError, match="index.json: names weight file.s. that are missing: model-00002"):
        folder_check.check_model_folder(base, "--model")
    folder_check.check_model_folder(tiny_model_dir)  # an intact folder passes


def test_the_weights_digest_tells_retrained_weights_apart_by_sampling_large_files(tmp_path, monkeypatch):
    import torch

    (tmp_path / "a").mkdir()
    save_file({"w": torch.zeros(1000), "v": torch.ones(3000)}, str(tmp_path / "a" / "model.safetensors"))
    monkeypatch.setattr(folder_check, "FULL_HASH_BYTES", 0)  # force the sampled path
    monkeypatch.setattr(folder_check, "SAMPLE_BYTES", 64)
    first = folder_check.weights_digest(tmp_path / "a")
    state = {"w": torch.zeros(1000), "v": torch.ones(3000)}
    state["v"][-1] = 2.0  # a change in the last bytes of one tensor
    save_file(state, str(tmp_path / "a" / "model.safetensors"))
    assert folder_check.weights_digest(tmp_path / "a") != first
    state["v"][-1] = 1.0
    save_file(state, str(tmp_path / "a" / "model.safetensors"))
    assert folder_check.weights_digest(tmp_path / "a") == first


def test_pretrain_base_refuses_a_held_folder_before_it_trains(tmp_path):
    from wise_rl.testbed.pretrain.config import PretrainConfig
    from wise_rl.testbed.pretrain.run import pretrain

    out = tmp_path / "base"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(outdir.FolderLockedError, match=rf"pid {holder.pid}"):
            pretrain(PretrainConfig(out=str(out), preset="tiny", max_steps=1))
        assert sorted(p.name for p in out.iterdir()) == [outdir.LOCK_FILE]
    finally:
        holder.communicate("\n", timeout=60)


FULL_DISK = """
import errno, sys, torch
ORIGINAL = torch.save
def save(obj, f, *a, **k):
    if "checkpoint-2" in str(f):
        raise OSError(errno.ENOSPC, "No space left on device")
    return ORIGINAL(obj, f, *a, **k)
torch.save = save
from wise_rl.scripts import sft
sys.exit(sft.cli(sys.argv[1:]))
"""


def test_a_full_disk_during_a_save_is_one_line_without_a_traceback(tiny_model_dir, shapeworld_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, *sft_argv(tiny_model_dir, shapeworld_dir, out,
                                                                      "--save_steps", "2")],
                          env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [line for line in errors if line.startswith("recipes/sft.py: error: ")] and len(errors) == 1
    assert f"saving a checkpoint under {out} failed; the disk holding it has" in errors[0]
    assert "Traceback" not in proc.stderr
