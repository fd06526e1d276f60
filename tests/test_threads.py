"""Threads: chosen for the machine and the model, an explicit count wins, set in torch, recorded with the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wise_rl import threads
from wise_rl.errors import UsageError
from wise_rl.training.precision import cpu_model

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "wise_rl/assets/shapeworld-base"


def test_an_explicit_count_wins_over_the_environment_and_the_model():
    assert threads.choose_threads("3", BASE, cuda=False, cores=8, env={"WISE_RL_THREADS": "2"}) == (3, "--threads")
    assert threads.choose_threads(None, BASE, cuda=False, cores=8, env={"WISE_RL_THREADS": "2"})[0] == 2
    # accelerate launch sets OMP_NUM_THREADS for every CPU child: not a choice, so not an override
    assert threads.choose_threads(None, BASE, cuda=False, cores=8, env={"OMP_NUM_THREADS": "8"})[0] == 1
    assert threads.choose_threads(4, None, cuda=False, cores=8, env={}, source="profile") == (4, "profile")


def test_a_small_model_gets_one_thread_and_a_large_or_unknown_one_every_core(tmp_path):
    n, reason = threads.choose_threads(None, BASE, cuda=False, cores=8, env={})
    assert n == 1 and "small model" in reason
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "model.safetensors", "wb") as f:  # a sparse file: its size, not its bytes, counts
        f.truncate(threads.SMALL_MODEL_BYTES + 1)
    assert threads.choose_threads(None, big, cuda=False, cores=8, env={})[0] == 8
    assert threads.choose_threads(None, "Qwen/Qwen2.5-VL-7B-Instruct", cuda=False, cores=6, env={})[0] == 6
    assert threads.choose_threads(None, BASE, cuda=True, cores=8, env={})[0] is None  # GPU: torch's default


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_count_is_a_one_line_usage_error(bad):
    with pytest.raises(UsageError, match="--threads: expected a whole number"):
        threads.choose_threads(bad, None, cuda=False, cores=2, env={})


def test_apply_sets_torch_and_the_record_names_threads_and_cpu():
    before = torch.get_num_threads()
    try:
        record = threads.apply_threads("2", BASE, cuda=False)
        assert torch.get_num_threads() == 2
        assert record == {"threads": 2, "threads_reason": "--threads", "cpu_model": cpu_model(),
                          "cpu_count": threads.available_cores()}
    finally:
        torch.set_num_threads(before)


def test_the_recipes_take_and_strip_the_threads_flag():
    assert threads.pop_threads_flag(["--config", "x.yaml", "--threads", "1", "--max_steps", "2"]) == (
        ["--config", "x.yaml", "--max_steps", "2"], "1")
    assert threads.pop_threads_flag(["--threads=4"]) == ([], "4")
    with pytest.raises(UsageError, match="--threads needs a value"):
        threads.pop_threads_flag(["--threads"])
