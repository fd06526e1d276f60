"""Quiet by default: the library lines a user cannot act on are filtered once, precisely (other warnings still show),
and a tiny SFT then a tiny GRPO run print nothing on stderr but progress, their own INFO news and actionable
warnings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("WISE_RL_TRACEBACK", None)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT))


def test_filtered_messages_are_dropped_and_others_still_show():
    code = r"""
import logging, warnings
import wise_rl
warnings.filterwarnings("always")  # a later, broader filter (as the training set-up adds) must not bring them back
warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
warnings.warn("`gradient_checkpointing_disable` is deprecated and will be removed in v6. Use "
              "`activation_checkpointing_disable` instead.", FutureWarning)
warnings.warn("`torch.distributed._all_gather_base` is a private function and will be deprecated. Please use "
              "`torch.distributed.all_gather_into_tensor` instead.", FutureWarning)
warnings.warn("`torch.distributed.reduce_scatter_tensor` is deprecated. Please use ...", FutureWarning)
warnings.warn("a FutureWarning nobody filtered", FutureWarning)
logging.basicConfig()
logging.getLogger("datasets.fingerprint").warning(
    "Parameter 'function'=<function f at 0x1> of the transform datasets.Dataset._map_single couldn't be hashed "
    "properly, a random hash was used instead.")
logging.getLogger("datasets.fingerprint").warning("another fingerprint warning")
logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
    "Failed to load CPU gemm_4bit_forward from kernels-community: offline.")
"""
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "a FutureWarning nobody filtered" in err and "another fingerprint warning" in err
    for silenced in ("is_gradient_checkpointing", "gradient_checkpointing_disable", "_all_gather_base", "reduce_scatter_tensor", "couldn't be hashed",
                     "gemm_4bit_forward"):
        assert silenced not in err


# Lines a user can act on, or progress: anything else on stderr fails the test.
ALLOWED = (
    re.compile(r"^precision: "),                                       # the precision choice and its reason
    re.compile(r"^threads: \d+ \("),                                    # the thread count and its reason
    re.compile(r"^\S+ \S+ INFO "),                                     # the recipe's own news
    re.compile(r"^\S+ \S+ WARNING wise_rl\.training\.rewards: \d+% of the completions were cut"),  # actionable
    re.compile(r"^\{'"),                                               # the trainer's metrics dict
)


def _unexplained(stderr: str) -> list[str]:
    lines = []
    for raw in stderr.splitlines():
        for line in raw.split("\r"):
            line = line.strip()
            if not line or re.search(r"\d+%\|.*\|", line) or line.endswith(("it/s]", "s/it]", "examples/s]")):
                continue  # progress bars
            if not any(p.search(line) for p in ALLOWED):
                lines.append(line)
    return lines


def test_a_tiny_sft_then_grpo_run_prints_only_lines_a_user_can_act_on(tiny_model_dir, shapeworld_dir, tmp_path):
    common = ["--model_name_or_path", str(tiny_model_dir), "--dataset", str(shapeworld_dir), "--dataset_split",
              "train", "--report_to", "none", "--dataset_limit", "8"]
    sft = _run([sys.executable, "recipes/sft.py", "--config", "recipes/tiny/sft.yaml", *common, "--max_steps", "2",
                "--per_device_train_batch_size", "4", "--save_steps", "2", "--sample_log_every", "0",
                "--output_dir", str(tmp_path / "sft")])
    assert sft.returncode == 0, sft.stderr[-3000:]
    assert _unexplained(sft.stderr) == []
    assert "threads: 1 (small model" in sft.stderr  # the choice the speed depends on, with its reason
    grpo = _run([sys.executable, "recipes/grpo.py", "--config", "recipes/tiny/grpo.yaml", *common,
                 "--model_name_or_path", str(tmp_path / "sft"), "--max_steps", "2", "--max_completion_length", "16",
                 "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--save_steps", "2",
                 "--output_dir", str(tmp_path / "grpo")])
    assert grpo.returncode == 0, grpo.stderr[-3000:]
    assert _unexplained(grpo.stderr) == []
    assert "were cut at max_completion_length 16 before" in grpo.stderr  # the one warning this run deserves
