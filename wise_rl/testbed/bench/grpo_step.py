"""``wise-rl bench grpo-step``: s/step of the recipe's GRPO trainer vs a plain ``trl.GRPOTrainer`` built by hand."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import time
from pathlib import Path
from typing import Any

from wise_rl.testbed.bench.common import DOC, _machine, write_section
from wise_rl.testbed.bench.official import plain_reward_funcs

GRPO_CONFIG = Path(__file__).resolve().parents[3] / "recipes" / "tiny" / "grpo.yaml"

# GRPOConfig fields copied from the recipe's parsed config into the hand-built one (everything the tiny recipe
# sets, and bf16, which the recipe resolves for the hardware); the two configs are then compared field by field and
# any other difference is reported.
_GRPO_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
                "max_completion_length", "temperature", "learning_rate", "lr_scheduler_type", "max_steps",
                "num_train_epochs", "weight_decay", "max_grad_norm", "seed", "loss_type", "beta", "epsilon",
                "use_bias_correction_kl",
                "reward_weights", "remove_unused_columns", "use_cpu", "dataloader_num_workers",
                "activation_checkpointing", "bf16", "logging_steps", "report_to", "save_strategy", "disable_tqdm")
# Settings that may differ without changing the work of a step.
_GRPO_FREE = {"output_dir", "logging_dir", "model_init_kwargs", "run_name", "log_completions",
              "num_completions_to_print"}


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time between consecutive optimizer-step ends (the first step is timed from ``on_train_begin``):
        each interval holds data loading, generation, rewards, forward/backward, the optimizer and logging."""

        def __init__(self):
            self.marks: list[float] = []
            self.lengths: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))

        @property
        def durations(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:])]

    return StepTimer()


def recipe_grpo_trainer(argv: list[str]):
    """The trainer exactly as ``recipes/grpo.py`` builds it (:func:`wise_rl.scripts.grpo.build_trainer`).
    Returns ``(trainer, training_args, script_args)``."""
    from wise_rl import training
    from wise_rl.scripts import grpo as module

    script_args, training_args, model_args = training.parse_grpo_args(argv)
    if script_args.algorithm != "grpo":
        raise ValueError("bench grpo-step times trl.GRPOTrainer; the config must have algorithm: grpo")
    training.validate_grpo_args(script_args, training_args, model_args)
    trainer, _, _ = module.build_trainer(script_args, training_args, model_args)
    return trainer, training_args, script_args


def plain_grpo_trainer(model_dir: str, recipe_args, script_args, output_dir: str, rewards: str = "plain"):
    """A ``trl.GRPOTrainer`` built by hand on the same model folder, the same ShapeWorld rows and the same settings
    as the recipe's: a ``GRPOConfig`` with :data:`_GRPO_FIELDS` copied over, the prompt mapped by hand, the
    processor from :func:`wise_rl.models.load_processor` (the stock one needs torchvision). ``rewards``: ``plain``
    (:func:`plain_reward_funcs`) or ``registry`` (the registry's callables, unwrapped)."""
    from trl import GRPOConfig, GRPOTrainer

    from wise_rl import formats
    from wise_rl.models import load_processor
    from wise_rl.testbed.shapeworld import generate_dataset

    kwargs = {name: getattr(recipe_args, name) for name in _GRPO_FIELDS}
    args = GRPOConfig(output_dir=output_dir, model_init_kwargs={"dtype": "float32"}, **kwargs)
    template = script_args.prompt_template or "wise-train"
    data = generate_dataset(n_train=script_args.shapeworld_rows, n_test=0, seed=script_args.shapeworld_seed,
                            image_size=script_args.shapeworld_image_size, progress=False)["train"]
    data = data.map(lambda q: {"prompt": [{"role": "user", "content": formats.render_prompt(template, q)}]},
                    input_columns=["query"])
    processor = load_processor(model_dir)
    if rewards == "plain":
        funcs = plain_reward_funcs(processor.tokenizer)
    elif rewards == "registry":
        from rewards import get_reward

        funcs = [get_reward(n, tokenizer=processor.tokenizer) if n == "self_distillation" else get_reward(n)
                 for n in script_args.reward_funcs]
    else:
        raise ValueError(f"rewards must be 'plain' or 'registry', got {rewards!r}")
    trainer = GRPOTrainer(model=model_dir, reward_funcs=funcs, args=args, train_dataset=data,
                          processing_class=processor)
    return trainer, args


def _config_diff(a, b) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return sorted(k for k in set(da) | set(db) if k not in _GRPO_FREE and da.get(k) != db.get(k))


GRPO_VARIANTS = ("recipe", "plain", "plain-registry")


def bench_grpo_step(steps: int = 12, rounds: int = 4, config: str | os.PathLike | None = None,
                    model: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
                    variants: tuple[str, ...] = GRPO_VARIANTS, threads: int | None = None,
                    max_completion_length: int | None = None, extra_args: tuple[str, ...] = (),
                    write: bool | str | os.PathLike = True, progress: bool = True) -> dict[str, Any]:
    """Seconds per GRPO optimizer step: ``recipes/grpo.py``'s trainer vs a plain ``trl.GRPOTrainer`` by hand.

    Variants (all on the same model folder, ShapeWorld rows and settings, ``config`` = ``recipes/tiny/grpo.yaml``
    by default, with checkpoints, reports and completion printing off):

    - ``recipe``: :func:`recipe_grpo_trainer` (reward registry + length-diagnostics wrapper + shared parsing);
    - ``plain``: :func:`plain_grpo_trainer` with :func:`plain_reward_funcs` (official-style functions);
    - ``plain-registry``: the plain trainer with the registry's reward callables (isolates the trainer path).

    ``extra_args``: more recipe command-line overrides (e.g. ``("--per_device_train_batch_size", "2")``); they
    reach the plain trainer through the copied fields.

    Fairness on a shared machine: ``rounds`` rounds; in each, every variant gets a fresh trainer (construction
    not timed) and trains ``ceil(steps / rounds) + 1`` steps from the same seed, the first of which (warm-up) is
    dropped; the variant order is reversed every other round. A step is the wall time between consecutive
    ``on_step_end`` callbacks. Reported per variant: the median s/step over all kept steps;
    ``ratio = median(recipe) / median(plain)`` (target ≤ 1.05), and ``ratio_registry = median(recipe) /
    median(plain-registry)``.
    """
    import math as _math
    import tempfile

    import torch
    from transformers import set_seed

    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model

    if steps < 1 or rounds < 1:
        raise ValueError(f"steps and rounds must be >= 1 (got {steps}, {rounds})")
    unknown = [v for v in variants if v not in GRPO_VARIANTS]
    if unknown or "recipe" not in variants or "plain" not in variants:
        raise ValueError(f"variants must include 'recipe' and 'plain' and be among {GRPO_VARIANTS}, got {variants}")
    if threads:
        torch.set_num_threads(int(threads))
    config = Path(config) if config else GRPO_CONFIG
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="wise-rl-bench-grpo-"))
    work.mkdir(parents=True, exist_ok=True)
    if model is None:
        model_dir = work / "model"
        if not (model_dir / "config.json").is_file():
            build_tiny_model(model_dir, preset="tiny", seed=0)
        model_desc = "wise_rl `tiny` preset, random weights (seed 0)"
    else:
        model_dir = Path(model)
        model_desc = f"`{model_dir}`"
    per_round = _math.ceil(steps / rounds)
    argv = ["--config", str(config), "--model_name_or_path", str(model_dir), "--max_steps", str(per_round + 1),
            "--report_to", "none", "--save_strategy", "no", "--sample_log_every", "0", "--logging_steps", "1",
            "--disable_tqdm", str(not progress).lower(), "--resume", "false"]
    if max_completion_length:
        argv += ["--max_completion_length", str(max_completion_length)]
    argv += list(extra_args)
    times: dict[str, list[float]] = {v: [] for v in variants}
    warmups: dict[str, list[float]] = {v: [] for v in variants}
    lengths: dict[str, list[list[float]]] = {v: [] for v in variants}
    diffs: dict[str, list[str]] = {}
    settings: dict[str, Any] = {}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for variant in order:
            out = str(work / f"{variant}-round{r}")
            if variant == "recipe":
                trainer, recipe_args, script_args = recipe_grpo_trainer(argv + ["--output_dir", out])
            else:
                from wise_rl import training

                script_args, recipe_args, _ = training.parse_grpo_args(argv + ["--output_dir", out])
                trainer, plain_args = plain_grpo_trainer(str(model_dir), recipe_args, script_args, out,
                                                         rewards="plain" if variant == "plain" else "registry")
                diffs[variant] = _config_diff(recipe_args, plain_args)
            if not settings:
                settings = {k: getattr(recipe_args, k) for k in ("per_device_train_batch_size",
                                                                 "gradient_accumulation_steps", "num_generations",
                                                                 "max_completion_length", "loss_type", "beta")}
                settings["reward_funcs"] = list(script_args.reward_funcs)
                settings["rows"] = script_args.shapeworld_rows
            timer = _step_timer()
            trainer.add_callback(timer)
            set_seed(recipe_args.seed)
            trainer.train()
            d = timer.durations
            if len(d) != per_round + 1:
                raise RuntimeError(f"{variant}: expected {per_round + 1} timed steps, got {len(d)}")
            warmups[variant].append(d[0])
            times[variant].extend(d[1:])
            lengths[variant].append(timer.lengths)
            del trainer
    med = {v: statistics.median(times[v]) for v in variants}
    result: dict[str, Any] = {
        "machine": _machine(),
        "model": model_desc,
        "config": str(config),
        "settings": settings,
        "rounds": rounds,
        "timed_steps_per_variant": len(times["recipe"]),
    }
    for v in variants:
        key = v.replace("-", "_")
        result[f"{key}_s_per_step"] = med[v]
        result[f"{key}_warmup_s"] = statistics.median(warmups[v])
        result[f"{key}_steps_s"] = times[v]
    result["ratio"] = med["recipe"] / med["plain"]
    if "plain-registry" in variants:
        result["ratio_registry"] = med["recipe"] / med["plain-registry"]
    result["config_differences"] = diffs
    result["same_rollouts"] = all(lengths[v] == lengths["recipe"] for v in variants)
    result["completion_mean_length"] = statistics.mean(x for run in lengths["recipe"] for x in run) \
        if any(lengths["recipe"]) else None
    result["load_average"] = (f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
                              if hasattr(os, "getloadavg") else "n/a")
    result["date"] = _dt.date.today().isoformat()
    if write:
        write_section("GRPO step", _grpo_section(result, steps, rounds, threads, max_completion_length, model,
                                                 config), DOC if write is True else Path(write))
    return result


def _grpo_section(r: dict[str, Any], steps, rounds, threads, max_completion_length, model, config) -> str:
    cmd = f"wise-rl bench grpo-step --steps {steps} --rounds {rounds}"
    if model:
        cmd += f" --model {model}"
    if config and Path(config) != GRPO_CONFIG:
        cmd += f" --config {config}"
    if max_completion_length:
        cmd += f" --max-completion-length {max_completion_length}"
    if threads:
        cmd += f" --threads {threads}"
    s = r["settings"]
    labels = {"recipe": "`recipes/grpo.py` construction (registry rewards + length-diagnostics wrapper)",
              "plain": "plain `trl.GRPOTrainer` + official-style reward functions",
              "plain-registry": "plain `trl.GRPOTrainer` + the registry's reward callables (no wrapper)"}
    rows = []
    for v in GRPO_VARIANTS:
        key = v.replace("-", "_")
        if f"{key}_s_per_step" in r:
            rows.append(f"| {labels[v]} | {r[f'{key}_s_per_step']:.3f} | {r[f'{key}_warmup_s']:.2f} |")
    ratio2 = (f"; recipe / plain-registry = **{r['ratio_registry']:.3f}**" if r.get("ratio_registry") else "")
    diffs = {k: v for k, v in r["config_differences"].items() if v}
    return (
        f"- command: `{cmd}`\n"
        f"- date: {r['date']}\n"
        f"- machine: {r['machine']}; 1-min load average {r['load_average']} (shared machine)\n"
        f"- model: {r['model']}; data: {s['rows']} ShapeWorld rows; config `{Path(r['config']).name}` "
        f"({s['per_device_train_batch_size']} × {s['gradient_accumulation_steps']} completions per step, "
        f"{s['num_generations']} generations per prompt, at most {s['max_completion_length']} completion tokens, "
        f"loss `{s['loss_type']}`, beta {s['beta']}); rewards {', '.join(s['reward_funcs'])}; checkpoints, "
        "reports and completion printing off for all variants\n"
        f"- method: {r['rounds']} rounds; each round builds a fresh trainer per variant (not timed), seeds it the "
        "same and trains; the first step of each round is warm-up and dropped; the variant order flips every "
        f"round; {r['timed_steps_per_variant']} timed steps per variant; step = wall time between consecutive "
        "optimizer-step ends (data, generation, rewards, forward/backward, optimizer, logging)\n"
        f"- identical rollouts across variants (same completion lengths every step): {r['same_rollouts']}; "
        f"GRPOConfig differences beyond output paths / model kwargs: {diffs or 'none'}\n\n"
        "| variant | median s / step | warm-up step (s) |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
        f"**Ratio recipe / plain = {r['ratio']:.3f}** (target ≤ 1.05){ratio2}.\n\n"
        "Notes: `save_steps` / `save_total_limit` have no effect with `save_strategy: no`, and "
        "`ddp_find_unused_parameters` none in one process. With the default random-weight model no completion "
        "parses, so every reward returns at once and the self-distillation gate never opens: the figure isolates "
        "the trainer path (data, prompt rows, processor, wrappers, logging); the reward stack's own cost is the "
        "Rewards bench.\n"
    )
