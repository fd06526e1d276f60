"""SFT data for the WISE warm-start from existing data, without new annotation (``wise-rl build-sft``).

Two builders, both writing a ``save_to_disk`` dataset in the sample schema that ``recipes/sft.py`` reads:

``compress`` — rows that carry only a detailed rationale get a concise one by *extractive compression*: the
    detailed text is split into sentences ``s_1 … s_n``; each is embedded with all-MiniLM-L6-v2 (unit vectors
    ``E(·)``), as is the whole text; sentences are ranked by ``cos(E(s_i), E(detailed))`` and the best ones are
    kept (in their original order) while the total stays within ``budget`` tokens, at most ``max_sentences``.
    If even the best sentence is longer than the budget, it is cut to its first ``budget`` tokens.
    Tokens are the given tokenizer's (the policy's, so the budget matches what the model emits) or whitespace
    words without one.

``explore`` — self-exploration: for each row, sample ``k`` completions from a base or teacher model with the
    ``verbose`` prompt (``<think>reasoning</think><answer>{json}</answer>``); keep the completion whose answer has
    the highest pixel-inclusive bbox IoU against ground truth if that IoU ≥ ``tau``, use its reasoning as the
    detailed rationale, and compress it for the concise one. Rows where no sample reaches ``tau`` are dropped and
    counted (the counts are logged and written to ``build_report.json``).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from wise_rl import formats
from wise_rl.tokens import count_tokens

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``, ``!`` or ``?`` followed by whitespace; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def token_counter(tokenizer=None) -> Callable[[str], int]:
    """The project's token count of a text, :func:`wise_rl.tokens.count_tokens` (the tokenizer's tokens without
    special tokens; whitespace words without a tokenizer)."""
    return lambda text: count_tokens(text, tokenizer)


def _truncate(text: str, budget: int, tokenizer=None) -> str:
    if tokenizer is None:
        return " ".join(text.split()[:budget])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:budget]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def compress_rationale(detailed: str, encode: Callable[[list[str]], np.ndarray], budget: int = 32,
                       max_sentences: int = 1, tokenizer=None) -> str:
    """The extractive concise rationale of ``detailed`` (see the module docstring for the rule).

    ``encode(texts)`` returns one unit-norm row per text (so a dot product is the cosine similarity).
    """
    if budget <= 0 or max_sentences <= 0:
        raise ValueError(f"budget and max_sentences must be positive, got {budget}, {max_sentences}")
    sentences = split_sentences(detailed)
    if not sentences:
        raise ValueError("cannot compress an empty rationale")
    count = token_counter(tokenizer)
    if len(sentences) == 1:
        scores = np.ones(1)
    else:
        emb = encode([detailed.strip(), *sentences])
        scores = emb[1:] @ emb[0]
    order = np.argsort(-scores, kind="stable")
    best = int(order[0])
    if count(sentences[best]) > budget:
        return _truncate(sentences[best], budget, tokenizer)
    chosen, used = [best], count(sentences[best])
    for i in order[1:]:
        if len(chosen) >= max_sentences:
            break
        n = count(sentences[int(i)])
        if used + n <= budget:
            chosen.append(int(i))
            used += n
    return " ".join(sentences[i] for i in sorted(chosen))


def _embedder(embedding_model=None):
    from rewards.distillation import Embedder

    return Embedder(embedding_model)


def _with_rationales(ds, detailed: list[str], concise: list[str]):
    """``ds`` with its ``detailed`` / ``concise`` columns replaced (string features, column order kept); other
    columns — images untouched — pass through."""
    from datasets import Value

    order = list(ds.column_names) + [c for c in ("detailed", "concise") if c not in ds.column_names]
    ds = ds.remove_columns([c for c in ("detailed", "concise") if c in ds.column_names])
    ds = ds.add_column("detailed", detailed, feature=Value("string"))
    ds = ds.add_column("concise", concise, feature=Value("string"))
    return ds.select_columns(order)


def build_compressed(ds, budget: int = 32, max_sentences: int = 1, tokenizer=None, embedding_model=None,
                     overwrite: bool = False, report: dict | None = None):
    """Fill ``concise`` for rows that have a ``detailed`` rationale and no concise one (all rows with
    ``overwrite``). Rows with neither rationale raise a ``ValueError`` naming them (nothing to compress)."""
    embedder = _embedder(embedding_model)
    detailed = list(ds["detailed"]) if "detailed" in ds.column_names else [None] * len(ds)
    concise = list(ds["concise"]) if "concise" in ds.column_names else [None] * len(ds)
    ids = list(ds["id"])
    missing = [ids[i] for i, d in enumerate(detailed) if not (d or "").strip()]
    if missing:
        raise ValueError(f"{len(missing)} row(s) have no detailed rationale to compress, e.g. {missing[:5]}; "
                         "use --mode explore to generate one")
    todo = [i for i, c in enumerate(concise) if overwrite or not (c or "").strip()]
    for i in tqdm(todo, desc="compress", unit="row"):
        concise[i] = compress_rationale(detailed[i], embedder.encode, budget, max_sentences, tokenizer)
    if report is not None:
        report.update({"mode": "compress", "rows": len(ds), "compressed": len(todo), "kept_concise": len(ds) - len(todo)})
    return _with_rationales(ds, detailed, concise)


def sample_completions(model, processor, image, query: str, k: int, temperature: float = 1.0,
                       max_new_tokens: int = 256, prompt_template: str = "verbose") -> list[str]:
    """``k`` sampled completions for one image + query with the named prompt."""
    import torch
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(
        [{"role": "user", "content": formats.render_prompt(prompt_template, query)}], images=[image])
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=temperature, num_return_sequences=k,
                             max_new_tokens=max_new_tokens)
    start = enc["input_ids"].shape[1]
    return processor.tokenizer.batch_decode(out[:, start:], skip_special_tokens=True)


def best_exploration(completions: Sequence[str], gt_bbox: Sequence[float], tau: float,
                     prompt_template: str = "verbose", stats: Counter | None = None) -> tuple[str | None, float]:
    """The reasoning of the completion with the highest bbox IoU ≥ ``tau`` (and that IoU), or ``(None, best)``.

    IoU is the WISE pixel-inclusive one (``wise_rl.metrics.box_iou``); completions that do not parse or have an
    empty reasoning are ignored. ``stats`` (a Counter) gets ``samples``, ``parsed`` and one ``failure:<reason>``
    count per sample that was ignored."""
    from wise_rl.metrics import box_iou

    best_text, best_iou = None, -1.0
    for completion in completions:
        parsed = formats.parse_for_prompt(completion, prompt_template)
        if stats is not None:
            stats["samples"] += 1
        if not parsed.ok or not (parsed.concise or "").strip():
            if stats is not None:
                stats[f"failure:{parsed.failure or 'empty_reasoning'}"] += 1
            continue
        if stats is not None:
            stats["parsed"] += 1
        iou = box_iou(parsed.bbox, gt_bbox)
        if iou > best_iou:
            best_iou, best_text = iou, parsed.concise.strip()
    if best_text is None or best_iou < tau:
        return None, max(best_iou, 0.0)
    return best_text, best_iou


def build_explored(ds, model_path, k: int = 4, tau: float = 0.5, temperature: float = 1.0,
                   max_new_tokens: int = 256, budget: int = 32, max_sentences: int = 1, embedding_model=None,
                   seed: int = 0, report: dict | None = None, sampler: Callable | None = None):
    """Self-exploration (module docstring). ``sampler(row) -> list[str]`` replaces the model (tests)."""
    import torch

    from wise_rl.models import load_model, load_processor

    processor = load_processor(model_path)
    if sampler is None:
        torch.manual_seed(seed)
        model = load_model(model_path, dtype="bfloat16" if torch.cuda.is_available() else "float32",
                           device_map="auto" if torch.cuda.is_available() else None).eval()

        def sampler(row):
            return sample_completions(model, processor, row["image"], row["query"], k, temperature, max_new_tokens)

    embedder = _embedder(embedding_model)
    kept, detailed, concise, ious = [], [], [], []
    skipped = no_object = 0
    stats: Counter = Counter()
    bar = tqdm(range(len(ds)), desc="explore", unit="row")
    for i in bar:
        row = ds[i]
        if row["gt_bbox"] is None:  # a LISA no-object sample: no box to match explorations against
            no_object += 1
            continue
        text, iou = best_exploration(sampler(row), row["gt_bbox"], tau, stats=stats)
        ious.append(iou)
        bar.set_postfix_str(f"kept {len(kept) + (text is not None)}/{i + 1}, parsed "
                            f"{stats['parsed']}/{stats['samples']} samples, mean best IoU {np.mean(ious):.2f}")
        if text is None:
            skipped += 1
            continue
        kept.append(i)
        detailed.append(text)
        concise.append(compress_rationale(text, embedder.encode, budget, max_sentences, processor.tokenizer))
    failures = {key.split(":", 1)[1]: n for key, n in sorted(stats.items()) if key.startswith("failure:")}
    info = {"mode": "explore", "rows": len(ds), "kept": len(kept), "skipped_below_tau": skipped,
            "skipped_no_object": no_object, "k": k,
            "tau": tau, "mean_best_iou": float(np.mean(ious)) if ious else 0.0, "samples": stats["samples"],
            "parsed": stats["parsed"], "parse_failures": failures}
    if report is not None:
        report.update(info)
    if skipped:
        logger.warning("explore: %d of %d rows had no sample with IoU ≥ %.2f and were dropped", skipped, len(ds), tau)
    if no_object:
        logger.warning("explore: %d of %d rows are no-object samples (no gt_bbox) and were skipped", no_object,
                       len(ds))
    if not kept:
        from wise_rl.errors import UsageError

        shown = ", ".join(f"{reason} {n}" for reason, n in failures.items()) or "none"
        raise UsageError(
            f"explore: no row reached IoU ≥ {tau} in {k} samples per row ({len(ds)} rows, {stats['samples']} "
            f"samples: {stats['parsed']} parsed in the verbose format, failures: {shown}; mean best IoU "
            f"{info['mean_best_iou']:.3f}); lower --tau, raise --k, or sample from a model that answers in the "
            "verbose <think>…</think><answer>…</answer> format")
    return _with_rationales(ds.select(kept), detailed, concise)


def build_sft_dataset(mode: str, source: Any, out, split: str | None = None, limit: int | None = None,
                      model_size: int | None = None, overwrite: bool = False, **options) -> dict[str, Any]:
    """Load ``source`` (anything ``load_source`` reads), build with ``mode`` and ``save_to_disk`` to ``out``.

    ``options["columns"]``: your own columns (``load_source``'s ``columns=``); ``options["frame"]``: the frame the
    rows are written in (``load_source``'s ``frame=``; every row records it, and ``load_source`` converts them to
    any other frame on reading). Returns the report (also written to ``out/build_report.json``)."""
    from wise_rl.data.loaders import load_source

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} is not empty; pass --overwrite")
    columns, frame = options.pop("columns", None), options.pop("frame", None)
    ds = load_source(source, split=split, model_size=model_size, limit=limit, lisa_texts="all",  # every text
                     columns=columns, frame=frame)
    report: dict[str, Any] = {"source": str(source), "split": split}
    if mode == "compress":
        built = build_compressed(ds, overwrite=options.pop("overwrite_concise", False), report=report, **options)
    elif mode == "explore":
        built = build_explored(ds, report=report, **options)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'compress' or 'explore'")
    out.mkdir(parents=True, exist_ok=True)
    built.save_to_disk(str(out))
    report["rows_out"] = len(built)
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
