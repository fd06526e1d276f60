"""``wise-rl bench rewards``: the project's reward stack against the official-style one, same batch, same models."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import time
from pathlib import Path
from typing import Any

from wise_rl.testbed.bench.common import DOC, _machine, write_section
from wise_rl.testbed.bench.official import (
    _official_format,
    _official_iou,
    make_reward_batch,
    official_rewards,
)


def bench_rewards(device: str | None = None, repeats: int = 5, n_prompts: int = 8, n_samples: int = 8,
                  seed: int = 0, threads: int | None = None,
                  write: bool | str | os.PathLike = True) -> dict[str, Any]:
    """Time the wise_rl reward stack against the official-style one on the same batch; median of ``repeats``.

    Model loading is excluded (both are warmed up once); caches of the wise_rl side are cleared before every
    repeat, so each repeat sees the batch as new text, as a training step does. Returns the figures and writes the
    "Rewards" section of ``docs/benchmarks.md`` (or the file given as ``write``).
    """
    import torch
    from transformers import AutoTokenizer

    from rewards import clear_parse_cache as clear_cache
    from rewards import get_reward
    from rewards.distillation import default_device, default_embedding_folder

    if threads:
        torch.set_num_threads(int(threads))
    device = device or default_device()
    batch = make_reward_batch(n_prompts, n_samples, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(default_embedding_folder())
    names = ["format", "answer_schema", "bbox_iou", "bbox_l1", "points", "self_distillation"]
    funcs = [get_reward(n, device=device, tokenizer=tokenizer) if n == "self_distillation" else get_reward(n)
             for n in names]
    distill = funcs[-1]
    model = distill.embedder.model()
    columns = {k: v for k, v in batch.items() if k not in ("prompts", "completions")}

    def ours() -> list[float]:
        clear_cache()
        distill.tokens._cache.clear()
        per = [f(prompts=batch["prompts"], completions=batch["completions"], **columns) for f in funcs]
        return [sum(v for v in row if v is not None) for row in zip(*per)]

    def theirs() -> list[float]:
        return official_rewards(batch, model, tokenizer)

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    a, b = ours(), theirs()  # warm-up, and the correctness check
    diff = max(abs(x - y) for x, y in zip(a, b))
    if diff > 1e-4:
        raise AssertionError(f"wise_rl and the official-style rewards disagree (max |diff| = {diff:.2e})")
    calls_before = distill.embedder.calls
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs()
        t_theirs.append(time.perf_counter() - t0)
    n_correct = sum(1 for c, g in zip(batch["completions"], batch["gt_bbox"])
                    if _official_iou(c, g) > 0.5 and _official_format(c))
    result = {
        "machine": _machine(),
        "device": device,
        "batch": f"{n_prompts} prompts × {n_samples} samples ({n_correct} correct and well-formed)",
        "repeats": repeats,
        "ours_ms": 1000 * statistics.median(t_ours),
        "official_ms": 1000 * statistics.median(t_theirs),
        "encode_calls_per_batch": (distill.embedder.calls - calls_before) / repeats,
        "official_encode_calls_per_batch": 2 * n_correct,
        "max_abs_diff": diff,
        "load_average": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after" if hasattr(os, "getloadavg")
        else "n/a",
        "date": _dt.date.today().isoformat(),
    }
    result["speedup"] = result["official_ms"] / result["ours_ms"]
    if write:
        body = (
            f"- command: `wise-rl bench rewards --device {device} --repeats {repeats}"
            f"{f' --threads {threads}' if threads else ''}`\n"
            f"- date: {result['date']}\n"
            f"- machine: {result['machine']}; 1-min load average {result['load_average']} (shared machine)\n"
            f"- batch: {result['batch']}; rationales repeat within each group (2 concise, 2 detailed per prompt)\n"
            f"- stack: format, answer_schema, bbox_iou, bbox_l1, points, self_distillation (all-MiniLM-L6-v2, "
            f"MiniLM tokenizer for both sides)\n\n"
            "| implementation | median time per batch | encode calls per batch |\n| --- | --- | --- |\n"
            f"| official-style (per-reward parsing, 2 single encodes per correct completion) | "
            f"{result['official_ms']:.1f} ms | {result['official_encode_calls_per_batch']} |\n"
            f"| wise_rl `rewards` (shared parse, gated + de-duplicated single batched encode) | "
            f"{result['ours_ms']:.1f} ms | {result['encode_calls_per_batch']:g} |\n\n"
            f"**Speed-up: {result['speedup']:.1f}×** (median of {repeats}); summed rewards agree to "
            f"{diff:.1e}.\n\n"
            "Where the time goes: on a CPU the embedding model costs about the same per token batched or not, so the "
            "gain there comes from encoding each distinct text once (the gate and the brevity factor skip the rest) "
            "and from parsing each completion once; batching pays off on a GPU. On a shared, loaded CPU, torch's "
            "multi-threaded single-text calls slow down far more than one batched call, which inflates the ratio: "
            "`--threads 1` gives the more conservative figure.\n"
        )
        write_section("Rewards", body, DOC if write is True else Path(write))
    return result
