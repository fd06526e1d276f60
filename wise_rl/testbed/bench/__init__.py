"""Benchmarks behind ``wise-rl bench NAME``; each appends / updates its section of ``docs/benchmarks.md``.

``BENCHES`` maps a name to a function ``bench_NAME(**options) -> dict`` (the figures):

- ``generation`` (:func:`~wise_rl.testbed.bench.generation.bench_generation`): WISE-S vs verbose generation on the
  same model and samples through the eval path (think tokens, completion tokens, latency; ratios verbose / wise-s);
- ``grpo-step`` (:func:`~wise_rl.testbed.bench.grpo_step.bench_grpo_step`): s/step of ``recipes/grpo.py``'s trainer
  construction vs a plain ``trl.GRPOTrainer`` built by hand on the same model, data and settings, interleaved;
- ``precision`` (:func:`~wise_rl.testbed.bench.precision.bench_precision`): s/step of the SFT recipe in fp32 vs
  bf16 autocast on this machine, next to its CPU model and bf16 flags;
- ``rewards`` (:func:`~wise_rl.testbed.bench.rewards.bench_rewards`): the full WISE reward stack on a realistic GRPO
  batch against the official-style implementation of :mod:`~wise_rl.testbed.bench.official`, in the same process
  with the same embedding model and tokenizer, checking that both give the same rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wise_rl.testbed.bench.common import DOC, format_result, write_section
from wise_rl.testbed.bench.generation import (
    GEN_MODEL_DEFAULTS,
    GEN_PROMPTS,
    bench_generation,
    build_generation_model,
    describe_generation_model,
)
from wise_rl.testbed.bench.grpo_step import (
    GRPO_CONFIG,
    GRPO_VARIANTS,
    bench_grpo_step,
    plain_grpo_trainer,
    recipe_grpo_trainer,
)
from wise_rl.testbed.bench.official import make_reward_batch, official_rewards, plain_reward_funcs
from wise_rl.testbed.bench.precision import bench_precision
from wise_rl.testbed.bench.rewards import bench_rewards

__all__ = [
    "BENCHES", "DOC", "GEN_MODEL_DEFAULTS", "GEN_PROMPTS", "GRPO_CONFIG", "GRPO_VARIANTS", "bench_generation",
    "bench_grpo_step", "bench_precision", "bench_rewards", "build_generation_model", "describe_generation_model", "format_result",
    "make_reward_batch", "official_rewards", "plain_grpo_trainer", "plain_reward_funcs", "recipe_grpo_trainer",
    "write_section",
]

BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "rewards": bench_rewards,
    "generation": bench_generation,
    "grpo-step": bench_grpo_step,
    "precision": bench_precision,
}
"""name → benchmark function; ``wise-rl bench NAME`` runs it."""
