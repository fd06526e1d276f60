"""Half-written state is never trusted, one folder has one run, a full disk says so, bad options fail before loading."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from wise_rl import evaluate, outdir, training
from wise_rl.data.loaders import DataError, load_source
from wise_rl.training import ConfigError, checkpoints

ROOT = Path(__file__).resolve().parents[2]


def fake_checkpoint(path: Path, step: int) -> Path:
    """A checkpoint folder with the files a resume reads (tiny tensors, real formats)."""
    path.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path / "model.safetensors"))
    torch.save({"state": {}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"cpu": torch.random.get_rng_state()}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 10}))
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---- "complete" means every file the resume reads parses -----------------------------------------------------------
@pytest.mark.parametrize(("damage", "reason"), [
    (lambda d: (d / "trainer_state.json").write_text(""), "trainer_state.json does not parse"),
    (lambda d: (d / "trainer_state.json").write_text('{"global_st'), "trainer_state.json does not parse"),
    (lambda d: (d / "trainer_state.json").write_text("{}"), "holds no global_step"),
    (lambda d: (d / "trainer_state.json").unlink(), "no trainer_state.json"),
    (lambda d: truncate(d / "model.safetensors", 0.9), "model.safetensors is truncated"),
    (lambda d: truncate(d / "model.safetensors", 0.01), "model.safetensors"),
    (lambda d: (d / "model.safetensors").unlink(), "no weights"),
    (lambda d: truncate(d / "optimizer.pt"), "optimizer.pt is truncated"),
    (lambda d: truncate(d / "rng_state.pth"), "rng_state.pth is truncated"),
], ids=["empty-state", "half-state", "no-step", "no-state", "short-weights", "no-header", "no-weights",
        "short-optimizer", "short-rng"])
def test_a_checkpoint_with_any_unreadable_file_is_incomplete(tmp_path, damage, reason):
    ckpt = fake_checkpoint(tmp_path / "checkpoint-4", 4)
    assert checkpoints.checkpoint_problem(ckpt) is None
    damage(ckpt)
    problem = checkpoints.checkpoint_problem(ckpt)
    assert problem is not None and reason in problem
    assert not checkpoints.is_complete_checkpoint(ckpt)


def test_sharded_weights_need_every_shard(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "checkpoint-2", 2)
    (ckpt / "model.safetensors").unlink()
    save_file({"a": torch.ones(3)}, str(ckpt / "model-00001-of-00002.safetensors"))
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert "model-00002-of-00002.safetensors" in checkpoints.checkpoint_problem(ckpt)


def test_incomplete_checkpoints_are_set_aside_and_take_no_save_total_limit_slot(tmp_path, caplog):
    from transformers.trainer_utils import rotate_checkpoints, sort_checkpoints

    for step in (2, 4):
        fake_checkpoint(tmp_path / f"checkpoint-{step}", step)
    bad = fake_checkpoint(tmp_path / "checkpoint-6", 6)
    (bad / "trainer_state.json").write_text("")
    with caplog.at_level("WARNING"):
        assert checkpoints.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert "checkpoint-6 is incomplete (trainer_state.json does not parse" in caplog.text
    assert not bad.exists()
    assert [p.name.split(".")[0] for p in (tmp_path / "incomplete").iterdir()] == ["checkpoint-6"]
    # transformers rotates every output_dir/checkpoint-* folder: the set-aside one is not among them
    assert sort_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-2"), str(tmp_path / "checkpoint-4")]
    rotate_checkpoints(str(tmp_path), save_total_limit=2)
    assert (tmp_path / "checkpoint-2").is_dir() and (tmp_path / "checkpoint-4").is_dir()
    assert checkpoints.last_complete_checkpoint(tmp_path / "absent") is None


def test_resume_from_an_explicit_half_written_checkpoint_says_why(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "checkpoint-2", 2)
    (ckpt / "trainer_state.json").write_text("")
    args = training.parse_sft_args(["--output_dir", str(tmp_path), "--resume_from_checkpoint", str(ckpt),
                                    "--use_cpu", "true"])
    with pytest.raises(ConfigError, match="not a complete checkpoint .trainer_state.json does not parse"):
        training.resolve_resume(args[0], args[1])


# ---- one eval per --out; duplicates are an error -------------------------------------------------------------------
class Scripted:
    def __init__(self, completions):
        self.completions, self.k = list(completions), 0

    def __call__(self, images, queries):
        out = [evaluate.Generation(c, 3, 0.01) for c in self.completions[self.k: self.k + len(images)]]
        self.k += len(images)
        return out


@pytest.fixture(scope="module")
def rows(shapeworld_dir):
    return load_source(str(shapeworld_dir), split="test", with_original_mask=True, limit=4)


def _eval(rows, shapeworld_dir, out):
    cfg = evaluate.EvalConfig(model="scripted", dataset=str(shapeworld_dir), split="test", prompt="wise",
                              batch_size=2, limit=4)
    return evaluate.run_eval(cfg, out, generator=Scripted(["<think>a</think><answer>{}</answer>"] * 4),
                             dataset=rows, progress=False)


HOLD = textwrap.dedent("""
    import sys
    from wise_rl.outdir import hold_folder
    with hold_folder(sys.argv[1], "wise-rl eval"):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_a_second_eval_on_a_held_folder_is_refused_naming_the_holder(tmp_path, rows, shapeworld_dir):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(outdir.FolderLockedError, match=rf"in use by wise-rl eval \(pid {holder.pid} on "):
            _eval(rows, shapeworld_dir, out)
        assert not (out / evaluate.SAMPLES_FILE).exists()
    finally:
        holder.communicate("\n", timeout=60)
    # the holder ended: the folder is free again, and a killed holder frees it too (the kernel drops the lock)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=60)
    assert _eval(rows, shapeworld_dir, out)["n"] == 4


def test_the_console_script_prints_the_refusal_as_one_line(tmp_path, tiny_model_dir, shapeworld_dir, monkeypatch,
                                                          capsys):
    from wise_rl import cli

    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["wise-rl", "eval", "--model", str(tiny_model_dir), "--dataset",
                                      str(shapeworld_dir), "--out", str(out), "--limit", "2", "--quiet"])
    with outdir.hold_folder(out, "wise-rl eval"):
        assert cli.entry() == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any("has no wise_rl.json" in line for line in lines)  # the test model has no records: a warning says so
    err = [line for line in lines if not line.startswith("wise-rl eval: warning: ")]
    assert len(err) == 1 and not (out / evaluate.SAMPLES_FILE).exists()
    assert err[0].startswith(f"wise-rl eval: error: {out} is in use by wise-rl eval (pid {os.getpid()} on ")


def test_the_same_process_cannot_hold_a_folder_twice(tmp_path):
    with outdir.hold_folder(tmp_path, "first"):
        with pytest.raises(outdir.FolderLockedError, match=f"pid {os.getpid()}"):
            with outdir.hold_folder(tmp_path, "second"):
                pass
    with outdir.hold_folder(tmp_path, "third"):  # released on exit
        pass


def test_ids_written_twice_are_an_error_on_resume(tmp_path, rows, shapeworld_dir):
    out = tmp_path / "out"
    _eval(rows, shapeworld_dir, out)
    samples = out / evaluate.SAMPLES_FILE
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines + lines[:1]))  # what two runs appending to one file leave
    with pytest.raises(evaluate.EvalError, match=rf"line 5: id {json.loads(lines[0])['id']!r} was already written "
                                                 r"on line 1"):
        _eval(rows, shapeworld_dir, out)


# ---- a full disk says so -------------------------------------------------------------------------------------------
Usage = namedtuple("Usage", "total used free")


def test_torch_write_failure_on_a_full_disk_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 4096))
    with pytest.raises(outdir.DiskFullError) as info:
        with outdir.disk_full_errors(tmp_path / "run", "saving a checkpoint"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1728 vs 1616")
    assert info.value.errno == errno.ENOSPC
    assert f"No space left on device: saving a checkpoint under {tmp_path / 'run'} failed" in str(info.value)
    assert "4.0 KiB free" in str(info.value)


def test_enospc_is_a_disk_full_error_and_other_errors_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda p: Usage(10**12, 10**9, 10**11))
    with pytest.raises(outdir.DiskFullError, match="No space left on device: writing under"):
        with outdir.disk_full_errors(tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="may be a quota or an I/O error") as info:  # plenty of space: not "full"
        with outdir.disk_full_errors(tmp_path):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert not isinstance(info.value, outdir.DiskFullError)
    with pytest.raises(RuntimeError, match="unrelated"):
        with outdir.disk_full_errors(tmp_path):
            raise RuntimeError("unrelated")


def test_a_full_disk_while_saving_a_checkpoint_then_a_rerun_skips_it(tiny_model_dir, shapeworld_dir, tmp_path,
                                                                      monkeypatch):
    out = tmp_path / "run"
    args = ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(tiny_model_dir),
            "--dataset", str(shapeworld_dir), "--dataset_split", "train", "--dataset_limit", "8",
            "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0", "--max_steps", "2",
            "--save_steps", "1", "--per_device_train_batch_size", "4"]
    real_save = torch.save

    def full_disk_save(obj, f, *a, **kw):
        if Path(f).parent.name == "checkpoint-2" and Path(f).name == "optimizer.pt":
            Path(f).write_bytes(b"PK\x03\x04")  # the start of a zip archive, then the disk is full
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1728 vs 1616")
        return real_save(obj, f, *a, **kw)

    from wise_rl.scripts import sft

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk_save)
        m.setattr(outdir.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 0))
        with pytest.raises(outdir.DiskFullError, match=f"saving a checkpoint under {out} failed; .* 0 B free"):
            sft.main(*training.parse_sft_args(args))
    summary = sft.main(*training.parse_sft_args(args))
    assert summary["resumed_from"] == str(out / "checkpoint-1") and summary["global_step"] == 2
    assert [p.name.split(".")[0] for p in (out / "incomplete").iterdir()] == ["checkpoint-2"]


# ---- checked before anything loads ---------------------------------------------------------------------------------
@pytest.fixture
def sft_argv(tiny_model_dir, tmp_path):
    return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(tiny_model_dir),
            "--output_dir", str(tmp_path / "out"), "--report_to", "none"]


def _error(argv) -> str:
    args = training.parse_sft_args(argv)
    with pytest.raises(ConfigError) as info:
        training.validate_sft_args(*args)
    return str(info.value)


@pytest.mark.parametrize("lr", ["0", "-1e-4", "nan"])
def test_learning_rate_must_be_positive(sft_argv, lr):
    assert _error(sft_argv + [f"--learning_rate={lr}"]).startswith("learning_rate: must be > 0")


def test_output_dir_that_is_a_file(sft_argv, tmp_path):
    (tmp_path / "file").write_text("x")
    assert _error(sft_argv + ["--output_dir", str(tmp_path / "file")]) == (
        f"output_dir: {str(tmp_path / 'file')!r} is an existing file; give a folder")


@pytest.mark.parametrize("config", ["sft", "grpo"])
def test_the_tiny_configs_never_build_a_model_for_a_mistyped_path(config, tmp_path):
    typo = tmp_path / "runs/tiny/modle"
    argv = ["--config", str(ROOT / f"recipes/tiny/{config}.yaml"), "--model_name_or_path", str(typo),
            "--output_dir", str(tmp_path / "out")]
    args = (training.parse_sft_args if config == "sft" else training.parse_grpo_args)(argv)
    assert not hasattr(args[0], "tiny_model_preset")  # no option builds a model in place of a missing one
    validate = training.validate_sft_args if config == "sft" else training.validate_grpo_args
    with pytest.raises(ConfigError, match=f"model_name_or_path: {str(typo)!r} does not exist .*wise-rl tiny-model"):
        validate(*args)
    assert not typo.exists()


def test_a_model_path_that_is_a_file_is_refused(sft_argv, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    msg = _error(sft_argv + ["--model_name_or_path", str(tmp_path / "model.safetensors")])
    assert msg.endswith("is a file; give a model folder or a hub id")


def _jsonl(tmp_path, n=3, cut=True) -> Path:
    lines = [json.dumps({"id": f"r{i}", "problem": f"thing {i}", "image": "a.png", "img_height": 84,
                         "img_width": 84, "solution": "<box>(1,1),(40,40)</box><points>(5,5),(9,9)</points>"})
             for i in range(n)]
    text = "\n".join(lines) + "\n"
    if cut:
        text = text[: len(text) - len(lines[-1]) // 2 - 1]  # a file cut while writing its last line
    from PIL import Image

    Image.new("RGB", (840, 840), (10, 20, 30)).save(tmp_path / "a.png")
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    return path


def test_a_truncated_jsonl_names_the_file_and_line(tmp_path):
    path = _jsonl(tmp_path)
    with pytest.raises(DataError, match=rf"source '{path}', row line 3: not valid JSON .*truncated") as info:
        load_source(path)
    assert info.value.code == "bad_json_line"


def test_a_truncated_jsonl_line_is_skipped_and_counted_under_skip_invalid(tmp_path):
    report: dict = {}
    ds = load_source(_jsonl(tmp_path), skip_invalid=True, report=report)
    assert ds["id"] == ["r0", "r1"]
    assert report["skipped"] == {"bad_json_line": 1} and report["rows_read"] == 3 and report["rows_out"] == 2
    assert len(load_source(_jsonl(tmp_path, cut=False))) == 3  # the intact file loads all rows


@pytest.mark.parametrize(("save_steps", "iterations", "warned"), [("1", "2", True), ("2", "2", False), ("3", "1", False)])
def test_checkpoints_inside_a_reused_rollout_batch_are_warned_about(tiny_model_dir, tmp_path, caplog, save_steps,
                                                                     iterations, warned):
    args = training.parse_grpo_args([
        "--config", str(ROOT / "recipes/tiny/grpo.yaml"), "--model_name_or_path", str(tiny_model_dir),
        "--output_dir", str(tmp_path), "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "4",
        "--num_iterations", iterations, "--save_steps", save_steps])
    with caplog.at_level("WARNING"):
        training.validate_grpo_args(*args)
    assert ("A save_steps multiple of 2 keeps resumes exact" in caplog.text) == warned
