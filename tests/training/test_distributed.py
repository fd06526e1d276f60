"""The recipes under DeepSpeed ZeRO-2 / ZeRO-3 with 2 CPU processes, launched exactly as users do.

``DS_ACCELERATOR=cpu accelerate launch --config_file deepspeed_configs/cpu_zero{2,3}_2proc.yaml recipes/….py``.
The first launch on a machine JIT-builds a DeepSpeed comm op (cached afterwards under ~/.cache/torch_extensions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _launch(ds_config, recipe, argv, tmp_path, timeout=600):
    pytest.importorskip("deepspeed")
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [str(accelerate), "launch", "--config_file", str(ROOT / "deepspeed_configs" / ds_config),
           "--main_process_port", str(29500 + os.getpid() % 1000), str(ROOT / "recipes" / recipe), *argv]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"launch failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_sft_zero2_two_cpu_processes(tiny_model_dir, shapeworld_dir, tmp_path):
    out = tmp_path / "sft-z2"
    _launch("cpu_zero2_2proc.yaml", "sft.py", [
        "--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(tiny_model_dir),
        "--dataset", str(shapeworld_dir), "--dataset_split", "train", "--dataset_limit", "16",
        "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0", "--max_steps", "3",
        "--per_device_train_batch_size", "2", "--save_steps", "2", "--logging_steps", "1"], tmp_path)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]
    assert (out / "model.safetensors").is_file()
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()


def test_grpo_zero3_with_a_reference_model_two_cpu_processes(tiny_model_dir, shapeworld_dir, tmp_path):
    out = tmp_path / "grpo-z3"
    _launch("cpu_zero3_2proc.yaml", "grpo.py", [
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(shapeworld_dir), "--dataset_split", "train",
        "--dataset_limit", "8", "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none",
        "--per_device_train_batch_size", "2", "--num_generations", "2", "--gradient_accumulation_steps", "1",
        "--max_completion_length", "8", "--max_steps", "2", "--save_strategy", "no", "--logging_steps", "1",
        "--beta", "0.01", "--reward_funcs", "format", "bbox_iou", "--reward_weights", "1", "1"], tmp_path)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logs = [h for h in state["log_history"] if "reward" in h]
    assert len(logs) == 2 and all("kl" in h and "rewards/bbox_iou/mean" in h for h in logs)
    assert (out / "model.safetensors").is_file(), "ZeRO-3 final save did not gather a 16-bit model"
