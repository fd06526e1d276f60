"""``wise-rl bench generation``: WISE-S vs verbose generation on the same model and samples, through the eval path."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Any

from wise_rl.testbed.bench.common import DOC, _machine, write_section

GEN_PROMPTS = ("verbose", "wise-s")
"""The two inference prompts compared by ``bench generation`` (ratios are verbose / wise-s)."""

GEN_MODEL_DEFAULTS: dict[str, Any] = {
    "preset": "tiny", "scenes": 64, "steps": 400, "batch_size": 8, "lr": 1e-2, "seed": 0, "image_size": 112,
    "train_prompts": ("verbose", "wise-s"), "init": None, "prompt_style": "official",
}
"""Settings of the offline bench model (``bench generation`` without ``--model``)."""

_TARGET_FOR_PROMPT = {"verbose": "verbose", "wise-train": "wise", "wise-s": "wise", "wise": "wise"}


def describe_generation_model(settings: dict[str, Any]) -> str:
    """One line that says exactly which model the offline generation bench trained."""
    from wise_rl.formats import styled_prompt

    s = settings
    style = s.get("prompt_style", "official")
    mix = " + ".join(f"`{styled_prompt(p, style)}` prompt → {_TARGET_FOR_PROMPT[p]} target"
                     for p in s["train_prompts"])
    start = (f"`{s['init']}`" if s.get("init") else f"wise_rl `{s['preset']}` preset (random init, seed {s['seed']})")
    return (f"{start} SFT-trained for {s['steps']} steps "
            f"(batch {s['batch_size']}, lr {s['lr']:g}, warmup + cosine) on {s['scenes']} ShapeWorld train scenes "
            f"({s['image_size']} px, seed {s['seed']}) × {len(s['train_prompts'])} rows each, an equal mix of "
            f"{mix}; completion-only loss through wise_rl.testbed.pretrain.run.make_trainer (transformers.Trainer + TRL's VLM "
            "collator) on wise_rl.training.sft_rows rows")


def build_generation_model(out_dir: str | os.PathLike, preset: str = "tiny", scenes: int = 64, steps: int = 400,
                           batch_size: int = 8, lr: float = 1e-2, seed: int = 0, image_size: int = 112,
                           train_prompts: tuple[str, ...] = ("verbose", "wise-s"), init: str | None = None,
                           prompt_style: str = "official", progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """The offline model of ``bench generation``: one model that emits both formats, depending on the prompt.

    A random-weight ``preset`` model is SFT-trained on ``scenes`` ShapeWorld train scenes, each turned into one
    row per prompt of ``train_prompts`` by :func:`wise_rl.training.sft_rows` (``verbose`` → ``<think>detailed
    </think><answer>…</answer>``; ``wise-s`` / ``wise-train`` → ``<think>concise</think><answer>…</answer><d_think>
    detailed</d_think>``), shuffled together, with the project's SFT trainer (:func:`wise_rl.testbed.pretrain.run.make_trainer`:
    TRL's VLM collator, prompt and completion tokenised separately, completion-only loss). A folder that already
    holds a model built with the same settings (``bench_model.json``) is reused. ``init``: start from that model
    folder (e.g. the ShapeWorld base) instead of a random ``preset``; ``prompt_style``: the wording of the prompts
    (:func:`wise_rl.formats.styled_prompt`). Returns ``(folder, info)``.
    """
    import torch
    from datasets import concatenate_datasets

    from wise_rl.models import load_model, load_processor
    from wise_rl.testbed.fixtures.tiny_model import build_tiny_model
    from wise_rl.testbed.pretrain.run import PretrainConfig, make_trainer
    from wise_rl.testbed.shapeworld import generate_dataset
    from wise_rl.training import sft_rows

    for p in train_prompts:
        if p not in _TARGET_FOR_PROMPT:
            raise ValueError(f"train prompt {p!r} unknown; expected some of {', '.join(_TARGET_FOR_PROMPT)}")
    settings = {"preset": preset, "scenes": int(scenes), "steps": int(steps), "batch_size": int(batch_size),
                "lr": float(lr), "seed": int(seed), "image_size": int(image_size),
                "train_prompts": list(train_prompts), "init": None if init is None else str(init),
                "prompt_style": prompt_style}
    out = Path(out_dir)
    info_file = out / "bench_model.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        if info.get("settings") == settings and (out / "config.json").is_file():
            return out, info
    out.mkdir(parents=True, exist_ok=True)
    train = generate_dataset(n_train=scenes, n_test=0, seed=seed, image_size=image_size, progress=False)["train"]
    from wise_rl.formats import styled_prompt

    rows = concatenate_datasets([sft_rows(train, styled_prompt(p, prompt_style), _TARGET_FOR_PROMPT[p])
                                 for p in train_prompts])
    rows = rows.shuffle(seed=seed)
    if init is not None:
        folder = Path(init)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"bench model init {folder}: no config.json (expected a model folder)")
    else:
        folder = build_tiny_model(out / "init", preset=preset, seed=seed, image_size=image_size)
    processor = load_processor(folder)
    model = load_model(folder, dtype=torch.float32)
    config = PretrainConfig(out=str(out), preset=preset, seed=seed, image_size=image_size, max_steps=steps,
                            batch_size=batch_size, lr=lr, warmup_steps=min(20, max(1, steps // 10)),
                            min_lr_ratio=0.1, weight_decay=0.0, logging_steps=max(1, steps // 10),
                            progress=progress)
    start = time.perf_counter()
    trainer = make_trainer(model, processor, rows, config, output_dir=out / "trainer")
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {"settings": settings, "description": describe_generation_model(settings),
            "train_wall_s": time.perf_counter() - start, "train_rows": len(rows),
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None}
    info_file.write_text(json.dumps(info, indent=1) + "\n")
    return out, info


def _generation_rows(dataset: str | None, split: str | None, n: int, seed: int, model_size: int,
                     image_size: int = 112):
    """``n`` evaluation rows: ShapeWorld's test split (disjoint from the bench model's train scenes) by default,
    else ``dataset`` loaded as ``wise-rl eval`` loads it."""
    if dataset is None:
        from wise_rl.testbed.shapeworld import generate_dataset

        return generate_dataset(n_train=0, n_test=n, seed=seed, image_size=image_size, progress=False)["test"]
    from wise_rl.evaluate import load_eval_rows

    return load_eval_rows(dataset, split, n, model_size)


def bench_generation(model: str | os.PathLike | None = None, dataset: str | None = None, split: str | None = None,
                     n: int = 32, batch_size: int = 8, max_new_tokens: int = 256,
                     work_dir: str | os.PathLike | None = None, threads: int | None = None,
                     model_options: dict[str, Any] | None = None, progress: bool = True,
                     write: bool | str | os.PathLike = True, prompt_style: str | None = None) -> dict[str, Any]:
    """WISE-S vs verbose generation on the same model and the same ``n`` samples, through the eval path.

    For each batch of ``batch_size`` samples, :class:`wise_rl.evaluate.HFGenerator` (greedy, stopped at
    ``</answer>``) runs once with the ``verbose`` prompt and once with ``wise-s`` (the order alternates from batch
    to batch, so load drifts on a shared machine hit both alike; one untimed warm-up batch per prompt first);
    :func:`wise_rl.evaluate.score_completion` scores each completion and counts its think tokens (policy
    tokenizer) and :func:`wise_rl.evaluate.run_metrics` aggregates, exactly as ``wise-rl eval`` does. Per sample:
    ``think_tokens``, ``completion_tokens`` and ``latency_s`` (batch generate time / batch size). Ratios are
    ``verbose mean / wise-s mean`` of think tokens, completion tokens and latency.

    Without ``model`` the offline bench model of :func:`build_generation_model` is built (or reused) under
    ``work_dir`` (default ``runs/bench/generation-model``) with ``model_options`` over
    :data:`GEN_MODEL_DEFAULTS`; ``dataset`` None: ShapeWorld test scenes. ``prompt_style`` ('official' or
    'compact', :func:`wise_rl.formats.styled_prompt`) words both prompts; default: the bench model's style, else
    official. Results keep the names ``verbose`` / ``wise-s``.
    """
    import torch

    from wise_rl import evaluate as ev
    from wise_rl.data.images import load_image
    from wise_rl.formats import styled_prompt
    from wise_rl.models import load_model, load_processor

    if n < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"n, batch_size and max_new_tokens must be >= 1 (got {n}, {batch_size}, {max_new_tokens})")
    if threads:
        torch.set_num_threads(int(threads))
    model_info: dict[str, Any] = {}
    if model is None:
        opts = dict(GEN_MODEL_DEFAULTS) | dict(model_options or {})
        unknown = set(opts) - set(GEN_MODEL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown bench-model option(s) {sorted(unknown)}; known: {', '.join(GEN_MODEL_DEFAULTS)}")
        work = Path(work_dir) if work_dir else DOC.parent.parent / "runs" / "bench" / "generation-model"
        folder, model_info = build_generation_model(work, progress=progress, **opts)
        model_desc = model_info["description"]
        image_size = int(opts["image_size"])
        data_seed = int(opts["seed"])
        prompt_style = prompt_style or opts["prompt_style"]
    else:
        folder = Path(model)
        if not folder.exists():
            raise FileNotFoundError(f"--model {folder}: no such folder")
        model_desc = f"`{folder}`"
        image_size, data_seed = 112, 0
    processor = load_processor(folder)
    policy = load_model(folder).eval()
    tokenizer = processor.tokenizer
    model_size = ev.processor_model_size(processor)
    rows = _generation_rows(dataset, split, n, data_seed, model_size, image_size)
    if len(rows) == 0:
        raise ValueError(f"dataset {dataset!r} has no rows")
    ids = ev._unique_ids(rows, dataset or "shapeworld test")
    decoder = ev.make_decoder("box")
    prompt_style = prompt_style or "official"
    styled = {p: styled_prompt(p, prompt_style) for p in GEN_PROMPTS}
    generators = {p: ev.HFGenerator(policy, processor, styled[p], max_new_tokens) for p in GEN_PROMPTS}
    batches = [list(range(s, min(s + batch_size, len(rows)))) for s in range(0, len(rows), batch_size)]

    def gen_batch(prompt, batch):
        samples = [rows[k] for k in batch]
        images = [load_image(r["image"]) for r in samples]
        return samples, generators[prompt](images, [r["query"] for r in samples])

    for p in GEN_PROMPTS:  # warm-up (not timed, not scored)
        gen_batch(p, batches[0])
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    records: dict[str, list[dict[str, Any]]] = {p: [] for p in GEN_PROMPTS}
    from tqdm.auto import tqdm

    for b, batch in enumerate(tqdm(batches, desc="bench generation", unit="batch", disable=not progress)):
        for p in (GEN_PROMPTS if b % 2 == 0 else GEN_PROMPTS[::-1]):
            samples, gens = gen_batch(p, batch)
            for row, g in zip(samples, gens):
                rec = ev.score_completion(g.completion, row, styled[p], decoder, frame=model_size,
                                          tokenizer=tokenizer)
                rec.update(completion_tokens=g.completion_tokens, latency_s=g.latency_s)
                records[p].append(rec)
    per_prompt = {p: ev.run_metrics(records[p], ids) for p in GEN_PROMPTS}

    def ratio(key):
        a, b = per_prompt["verbose"].get(key), per_prompt["wise-s"].get(key)
        return a / b if a is not None and b not in (None, 0) else None

    result: dict[str, Any] = {
        "machine": _machine(),
        "model": model_desc,
        "model_folder": str(folder),
        "dataset": dataset or f"ShapeWorld test split ({image_size} px, seed {data_seed})",
        "n": len(rows),
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "prompts": styled,
    }
    for p in GEN_PROMPTS:
        m = per_prompt[p]
        for key in ("think_tokens_mean", "completion_tokens_mean", "latency_mean_s", "format_valid", "acc50",
                    "gIoU"):
            result[f"{p}_{key}"] = m.get(key)
    result["think_tokens_ratio"] = ratio("think_tokens_mean")
    result["completion_tokens_ratio"] = ratio("completion_tokens_mean")
    result["latency_ratio"] = ratio("latency_mean_s")
    result["load_average"] = (f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
                              if hasattr(os, "getloadavg") else "n/a")
    result["date"] = _dt.date.today().isoformat()
    if model_info:
        result["model_settings"] = model_info.get("settings")
        result["model_train_wall_s"] = model_info.get("train_wall_s")
        result["model_final_loss"] = model_info.get("final_loss")
    result["samples"] = {p: [{k: r.get(k) for k in ("id", "think_tokens", "completion_tokens", "latency_s",
                                                     "format_ok", "iou", "completion")} for r in records[p]]
                         for p in GEN_PROMPTS}
    if write:
        write_section("Generation", _generation_section(result, model is None, dataset, split, threads),
                      DOC if write is True else Path(write))
    return result


def _fmt_num(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _generation_section(r: dict[str, Any], offline: bool, dataset, split, threads) -> str:
    cmd = "wise-rl bench generation"
    if not offline:
        cmd += f" --model {r['model_folder']}"
    if dataset:
        cmd += f" --dataset {dataset}" + (f" --split {split}" if split else "")
    cmd += f" --n {r['n']} --batch-size {r['batch_size']} --max-new-tokens {r['max_new_tokens']}"
    prompts = r.get("prompts") or dict(zip(GEN_PROMPTS, GEN_PROMPTS))
    ms = r.get("model_settings") or {}
    for key, flag in (("init", "--train-init"), ("lr", "--train-lr"), ("steps", "--train-steps"),
                      ("scenes", "--train-scenes")):
        if offline and ms.get(key) is not None and ms.get(key) != GEN_MODEL_DEFAULTS[key]:
            cmd += f" {flag} {ms[key]}"
    if prompts["wise-s"].endswith("-compact"):
        cmd += " --prompt-style compact"
    if threads:
        cmd += f" --threads {threads}"
    rows = []
    for key, label, digits in (("think_tokens_mean", "think tokens (mean)", 1),
                               ("completion_tokens_mean", "completion tokens (mean)", 1),
                               ("latency_mean_s", "generate latency (s / sample)", 4)):
        v, w = r[f"verbose_{key}"], r[f"wise-s_{key}"]
        ratio = r[{"think_tokens_mean": "think_tokens_ratio", "completion_tokens_mean": "completion_tokens_ratio",
                   "latency_mean_s": "latency_ratio"}[key]]
        rows.append(f"| {label} | {_fmt_num(v, digits)} | {_fmt_num(w, digits)} | "
                    f"{'—' if ratio is None else f'{ratio:.2f}×'} |")
    for key, label in (("format_valid", "format valid %"), ("acc50", "acc@0.5 % (box-decoded mask)")):
        v, w = r[f"verbose_{key}"], r[f"wise-s_{key}"]
        rows.append(f"| {label} | {_fmt_num(None if v is None else 100 * v)} | "
                    f"{_fmt_num(None if w is None else 100 * w)} | |")
    weak = [p for p in GEN_PROMPTS if (r.get(f"{p}_format_valid") or 0.0) < 0.9]
    caveat = ""
    if weak:
        caveat = (f"\n**Caveat:** format valid below 90 % for {', '.join(weak)}: this model does not reliably emit "
                  "that prompt's format (e.g. it never closes `<think>` early under wise-s), so these ratios do not "
                  "measure WISE-S's compression. Re-run with `--model` pointing at a trained WISE model (the demo's "
                  "WISE checkpoint, or a longer `--train-steps`).\n")
    trained = ""
    if offline and r.get("model_train_wall_s") is not None:
        trained = (f" Training took {r['model_train_wall_s']:.0f} s on this machine (final training loss "
                   f"{r['model_final_loss']:.3f}; cached in `{r['model_folder']}`).")
    return (
        f"- command: `{cmd}`\n"
        f"- date: {r['date']}\n"
        f"- machine: {r['machine']}; 1-min load average {r['load_average']} (shared machine)\n"
        f"- model: {r['model']}.{trained}\n"
        f"- samples: {r['n']} from {r['dataset']}, batches of {r['batch_size']}, greedy, at most "
        f"{r['max_new_tokens']} new tokens, stopped at `</answer>` (wise_rl.evaluate.HFGenerator); the two prompts "
        f"(`{prompts['verbose']}`, `{prompts['wise-s']}`) "
        "alternate batch by batch after one untimed warm-up batch each\n\n"
        "| per sample | verbose | wise-s | verbose / wise-s |\n| --- | --- | --- | --- |\n"
        + "\n".join(rows) + "\n\n"
        "Think tokens: the `<think>` content counted with the policy tokenizer (as `wise-rl eval` counts them); "
        "completion tokens: every generated token up to the stop string; latency: batch generate time / batch size "
        "(a batch runs until its longest row stops, so latency follows the longest completion of each batch). "
        "Accuracy of the offline bench model is not the point here (it is trained for minutes); the figures are "
        "what the same model costs under the two prompts.\n" + caveat
    )
