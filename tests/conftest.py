"""Shared offline fixtures: a tiny Qwen2.5-VL and a small ShapeWorld dataset, built once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    """Every test starts with torch on one thread, whatever an earlier test's recipe or verb chose: a weight
    compared bit for bit with a subprocess's (which also runs on one thread) depends on the reduction order."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-weight tiny Qwen2.5-VL with its processor, saved to a folder."""
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), preset="tiny", seed=0)


@pytest.fixture(scope="session")
def shapeworld_dir(tmp_path_factory):
    """A small ShapeWorld DatasetDict (train/test) saved with save_to_disk."""
    from wise_rl.testbed.shapeworld import generate_dataset

    out = tmp_path_factory.mktemp("shapeworld")
    generate_dataset(n_train=64, n_test=16, seed=0, out_dir=out)
    return out
