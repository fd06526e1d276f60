"""``wise-rl bench precision``: seconds per SFT step in fp32 and in bf16 autocast on this machine.

The same recipe (default ``recipes/demo/sft_verbose.yaml``: the demo's verbose arm, 16 rows of ~200 target tokens
a step) on the same model (default the shipped ShapeWorld base) and data, once with ``bf16: false`` and once with
``bf16: true``; ``steps`` timed steps after one warm-up step, interleaved over ``rounds`` so load drifts hit both.
Reports the median s/step of each and the ratio bf16 / fp32 next to the CPU model and its bf16 flags: on a CPU
without AMX / AVX512-BF16 the ratio is large (torch's reference bf16 GEMM), which is why the recipes default to fp32
on CPUs (:mod:`wise_rl.training.precision`).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from wise_rl.testbed.bench.common import DOC, _machine, write_section

PRECISION_CONFIG = "recipes/demo/sft_verbose.yaml"
PRECISION_MODEL = "wise_rl/assets/shapeworld-base"


def _step_times(argv: list[str]) -> list[float]:
    import transformers
    from transformers import TrainerCallback

    from wise_rl import training
    from wise_rl.scripts import sft

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    script_args, training_args, model_args = training.parse_sft_args(argv)
    original = transformers.Trainer.train

    def timed(trainer, *args, **kwargs):  # the recipe's own trainer, with a step clock added
        trainer.add_callback(Clock())
        return original(trainer, *args, **kwargs)

    transformers.Trainer.train = timed
    try:
        sft.main(script_args, training_args, model_args)
    finally:
        transformers.Trainer.train = original
    return times[1:]  # the first step warms up


def bench_precision(steps: int = 3, rounds: int = 2, config: str | None = None, model: str | None = None,
                    dataset: str | None = None, threads: int | None = None,
                    write: bool | str | os.PathLike = True) -> dict[str, Any]:
    """Median s/step of the SFT recipe in fp32 and bf16; writes the "Precision" section of ``docs/benchmarks.md``
    (or the file given as ``write``). ``dataset`` defaults to 64 ShapeWorld scenes built here."""
    import torch

    from wise_rl.training.precision import cpu_flags

    if threads:
        torch.set_num_threads(int(threads))
    config = config or PRECISION_CONFIG
    model = model or PRECISION_MODEL
    per = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory(prefix="wise-rl-bench-precision-") as tmp:
        if dataset is None:
            from wise_rl.testbed.shapeworld import generate_dataset

            dataset = str(Path(tmp) / "data")
            generate_dataset(64, 0, seed=0, out_dir=dataset, progress=False)
        for r in range(rounds):
            order = ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")
            for name in order:
                argv = ["--config", config, "--model_name_or_path", model, "--dataset", dataset,
                        "--output_dir", str(Path(tmp) / f"{name}-{r}"), "--max_steps", str(steps + 1),
                        "--save_strategy", "no", "--disable_tqdm", "true", "--bf16", str(name == "bf16").lower(),
                        "--report_to", "none"]
                per[name] += _step_times(argv)
    fp32, bf16 = statistics.median(per["fp32"]), statistics.median(per["bf16"])
    flags = cpu_flags()
    result = {"fp32_s_per_step": fp32, "bf16_s_per_step": bf16, "ratio_bf16_over_fp32": bf16 / fp32,
              "machine": _machine(), "native_bf16_flags": sorted(f for f in flags if "bf16" in f),
              "steps_timed": {k: len(v) for k, v in per.items()}, "config": config, "model": model,
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None, "times": per}
    if write:
        threads_flag = f" --threads {threads}" if threads else ""
        body = (f"- command: `wise-rl bench precision --steps {steps} --rounds {rounds}{threads_flag}`\n"
                f"- date: {time.strftime('%Y-%m-%d')}\n"
                f"- machine: {result['machine']}; 1-min load average {result['load_average']:.1f} (shared machine)\n"
                f"- recipe: `{config}` on `{model}`; {steps} timed steps per round and precision after one warm-up, "
                f"{rounds} rounds, order flipped each round\n\n"
                "| precision | median s / step |\n| --- | --- |\n"
                f"| fp32 | {fp32:.3f} |\n| bf16 autocast | {bf16:.3f} |\n\n"
                f"**bf16 / fp32 = {bf16 / fp32:.2f}×** on this CPU. The recipes default to fp32 on every CPU "
                "(`wise_rl/training/precision.py`): on one without native bf16 the same step was 8.4× slower in bf16 (AMD "
                "Zen 3, 1 thread, 16 × 300 tokens, 2026-11-29).\n")
        write_section("Precision", body, DOC if write is True else Path(write))
    return result
