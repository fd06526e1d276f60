"""Evaluation: batched greedy generation stopped at the answer, resumable ``samples.jsonl``, ``metrics.json``.

Pipeline for one sample (the same code scores ``wise-rl eval`` generations and ``wise-rl score`` predictions)::

    completion ──formats.parse_for_prompt──▶ answer (model frame)
               ──frames.answer_to_original──▶ answer (original frame, image_size = [W, H])
               ──mask decoder (box | sam2) on the original image──▶ predicted mask (H×W)
               ──metrics.score_mask against the original-frame target──▶ I, U, IoU

Ground truth, in this order: ``original_mask`` (the loader's original-frame mask, 255 = ignore); else ``gt_mask``
(model frame) resized to the original frame by nearest neighbour; else (refCOCOg rows carry no mask) the ground-truth
bbox rasterised in the original frame (pixel-inclusive). ``metrics.json`` counts which one each sample used
(``gt_sources``).

A completion is scored whenever it holds a valid answer object in its ``<answer>`` block, as the official and
Seg-Zero scorers (which extract the answer JSON) do; whether it also matched the prompt's full layout is reported as
``format_ok`` (rate ``format_valid``). With ``strict_format=True`` a layout failure is a failed sample too.

Output folder of a run::

    run.json       the settings (checked on resume: a different model/dataset/prompt/... is an error)
    samples.jsonl  one JSON object per sample, appended and flushed as each batch finishes
    metrics.json   metrics.aggregate(...) + settings, written at the end (also by --merge)

Resume: ids already in ``samples.jsonl`` are skipped; a half-written last line (a killed run) is ignored and that
sample recomputed. Batches have fixed boundaries over the run's id list, and a batch that is partly done is
regenerated whole (only its missing ids are written), so every sample is generated in the same batch composition
as in an uninterrupted run: same completions, same metrics.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wise_rl import formats, frames, metrics
from wise_rl.data.images import load_image
from wise_rl.data.schema import as_mask_array

logger = logging.getLogger(__name__)

SAMPLES_FILE, METRICS_FILE, RUN_FILE = "samples.jsonl", "metrics.json", "run.json"
EVAL_PROMPTS = ("wise", "wise-s", "verbose")
# Settings that change the results: a resumed or merged run must agree on all of them.
RESULT_KEYS = ("model", "dataset", "split", "prompt", "mask_decoder", "sam2", "max_new_tokens", "limit",
               "strict_format", "model_size")
# Fields that must be equal when the same id appears in two merged shards.
RESULT_FIELDS = ("completion", "answer", "intersection", "union", "iou", "failure")


class EvalError(RuntimeError):
    """A run folder or prediction file that cannot be used as asked (the message says which and why)."""


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------
def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n; None → ``(0, 1)``."""
    if spec in (None, ""):
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def shard_slice(n_items: int, shard: tuple[int, int]) -> range:
    """Contiguous, deterministic shard ``i`` of ``n``: items ``[i·N//n, (i+1)·N//n)``."""
    i, n = shard
    return range(i * n_items // n, (i + 1) * n_items // n)


def cut_at_stop(text: str, stop: str | None) -> str:
    """``text`` cut right after the first occurrence of ``stop`` (unchanged when absent or ``stop`` is None)."""
    if not stop:
        return text
    k = text.find(stop)
    return text if k < 0 else text[: k + len(stop)]


# An unclosed <think> ends at the first tag that follows it (<answer>, <d_think>), else at the end of the text (a
# completion cut by max_new_tokens): the answer is never counted as thinking.
_THINK_RE = re.compile(re.escape(formats.THINK_OPEN) + r"(.*?)(?:" + re.escape(formats.THINK_CLOSE) + "|(?="
                       + re.escape(formats.ANSWER_OPEN) + "|" + re.escape(formats.D_THINK_OPEN) + r")|$)", re.DOTALL)


def think_text(completion: str) -> str:
    """Content of the first ``<think>`` block; an unclosed block runs to the next ``<answer>`` / ``<d_think>`` tag,
    else to the end (a truncated completion). No ``<think>`` tag: empty string (see :func:`measured_think`)."""
    m = _THINK_RE.search(completion)
    return m.group(1).strip() if m else ""


def measured_think(completion: str, prompt: str) -> str | None:
    """The think text whose length is the sample's thinking cost, or None when it cannot be measured: the prompt
    asks for a ``<think>`` block and the completion has none (a broken format is not "0 tokens of thinking").
    ``answer-only`` prompts ask for no thinking: "" (a true 0)."""
    if formats.PROMPT_SPECS[prompt]["layout"] == "answer-only":
        return ""
    if formats.THINK_OPEN not in completion:
        return None
    return think_text(completion)


def count_tokens(tokenizer, text: str | None) -> int | None:
    """Tokens of ``text`` with the policy tokenizer (no special tokens added); None without a tokenizer."""
    if tokenizer is None or text is None:
        return None
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def processor_model_size(processor, default: int = frames.DEFAULT_MODEL_SIZE) -> int:
    """The square frame a model answers in: √min_pixels when the image processor pins min = max pixels to a
    square (the tiny ShapeWorld models: 112), else ``default`` (840 for real checkpoints)."""
    ip = getattr(processor, "image_processor", None)
    lo, hi = getattr(ip, "min_pixels", None), getattr(ip, "max_pixels", None)
    size = getattr(ip, "size", None)
    if (lo is None or hi is None) and size is not None:  # transformers 5.x keeps them in size (a SizeDict)
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        lo, hi = get("shortest_edge"), get("longest_edge")
    if lo and hi and lo == hi and math.isqrt(int(lo)) ** 2 == int(lo):
        return math.isqrt(int(lo))
    return default


def chat_messages(prompt_text: str) -> list[dict[str, Any]]:
    """One user turn: the image, then the prompt text (as TRL's conversational VLM rows put it)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt_text}]}]


# ----------------------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Generation:
    completion: str  # cut right after the stop string
    completion_tokens: int  # tokens the model generated for this row (stop/eos token included, padding not)
    latency_s: float  # batch generate time / batch size


class HFGenerator:
    """Batched greedy generation with a Qwen2.5-VL model and processor, stopping each row at ``stop``.

    Left padding; ``model.generate(do_sample=False, stop_strings=[stop], tokenizer=...)``: each row finishes on its
    own when its text contains the stop string (or eos), and its text is cut right after the stop string.
    """

    def __init__(self, model, processor, prompt: str, max_new_tokens: int = 1024, stop: str | None = "default"):
        if prompt not in formats.PROMPT_SPECS:
            raise ValueError(f"unknown prompt {prompt!r}; known: {', '.join(formats.available_prompts())}")
        self.model, self.processor, self.prompt = model, processor, prompt
        self.max_new_tokens = int(max_new_tokens)
        self.stop = formats.PROMPT_SPECS[prompt]["stop"] if stop == "default" else stop
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        # special tokens that are not format tags are stripped from decoded text
        self._specials = [t for t in self.tokenizer.all_special_tokens if t not in formats.TAGS]
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self._pad = self.tokenizer.pad_token_id

    def prompt_texts(self, queries: Sequence[str]) -> list[str]:
        return [
            self.processor.apply_chat_template(
                chat_messages(formats.render_prompt(self.prompt, q)), add_generation_prompt=True, tokenize=False
            )
            for q in queries
        ]

    def _row_length(self, ids: list[int]) -> int:
        """Generated tokens of one row: up to the first eos (included) or the first padding (excluded)."""
        for k, t in enumerate(ids):
            if t == self._pad and t not in self._eos:
                return k
            if t in self._eos:
                if t == self._pad and self.stop and self.stop in self._decode(ids[:k]):
                    return k  # padding after a stop-string finish (pad == eos)
                return k + 1
        return len(ids)

    def _decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        for tok in self._specials:
            text = text.replace(tok, "")
        return text

    def __call__(self, images: Sequence[Image.Image], queries: Sequence[str]) -> list[Generation]:
        import torch

        texts = self.prompt_texts(queries)
        inputs = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        kwargs: dict[str, Any] = dict(
            do_sample=False, max_new_tokens=self.max_new_tokens, pad_token_id=self._pad,
            temperature=None, top_p=None, top_k=None,
        )
        if self.stop:
            kwargs.update(stop_strings=[self.stop], tokenizer=self.tokenizer)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        elapsed = time.perf_counter() - start
        new = out[:, inputs["input_ids"].shape[1]:].tolist()
        results = []
        for ids in new:
            n = self._row_length(ids)
            text = cut_at_stop(self._decode(ids[:n]), self.stop)
            results.append(Generation(completion=text, completion_tokens=n, latency_s=elapsed / len(new)))
        return results


# ----------------------------------------------------------------------------------------------------------------
# Scoring one sample
# ----------------------------------------------------------------------------------------------------------------
def ground_truth(row: dict[str, Any]) -> tuple[np.ndarray, str]:
    """The original-frame target mask of a row and where it came from (``original_mask`` | ``gt_mask_resized`` |
    ``bbox``)."""
    width, height = (int(v) for v in row["image_size"])
    original = as_mask_array(row.get("original_mask"))
    if original is not None:
        if original.shape != (height, width):
            raise EvalError(f"sample {row['id']!r}: original_mask is {original.shape[::-1]} (W×H) but image_size is "
                            f"{width}×{height}")
        return original, "original_mask"
    gt = as_mask_array(row.get("gt_mask"))
    if gt is not None:
        return frames.mask_to_original(gt, (width, height)), "gt_mask_resized"
    if row.get("gt_bbox") is None:
        raise EvalError(f"sample {row['id']!r} has no original_mask, gt_mask nor gt_bbox: nothing to score against")
    from wise_rl.masks import rasterize_bbox

    box = frames.bbox_to_original(row["gt_bbox"], (width, height), int(row["model_size"]))
    return rasterize_bbox(box, (width, height)), "bbox"


def original_image(row: dict[str, Any]) -> Image.Image:
    """The image in the original frame: the row's ``original_image`` when the loader gives one, else the model-frame
    image resized back to ``image_size`` (exact for ShapeWorld, where both frames are the same)."""
    if row.get("original_image") is not None:
        return load_image(row["original_image"])
    image = load_image(row["image"])
    size = tuple(int(v) for v in row["image_size"])
    return image if image.size == size else image.resize(size, Image.BICUBIC)


def score_completion(
    completion: str,
    row: dict[str, Any],
    prompt: str,
    decoder,
    frame: str | int = "model",
    tokenizer=None,
    strict_format: bool = False,
    gt: tuple[np.ndarray, str] | None = None,
) -> dict[str, Any]:
    """The per-sample record of one completion (no generation fields).

    ``frame``: the frame the answer's coordinates are in — ``"model"`` (the row's ``model_size``, 840 for real
    data), an int ``S`` (an S×S frame) or ``"original"`` (already in original pixels).
    """
    parsed = formats.parse_for_prompt(completion, prompt)
    gt_mask, gt_source = gt if gt is not None else ground_truth(row)
    width, height = gt_mask.shape[1], gt_mask.shape[0]
    failure = parsed.failure if parsed.answer is None else None
    if failure is None and strict_format and not parsed.format_ok:
        failure = parsed.failure or "format"
    answer_original = None
    pred = None
    if failure is None:
        if frame == "original":
            answer_original = {k: list(v) for k, v in parsed.answer.items()}
        else:
            size = int(row["model_size"]) if frame == "model" else int(frame)
            answer_original = frames.answer_to_original(parsed.answer, (width, height), size)
        try:
            pred = np.asarray(decoder.decode(original_image(row) if not _is_box(decoder) else (width, height),
                                             answer_original))
        except ValueError as exc:
            logger.warning("sample %r: mask decoder failed (%s); counted as %s", row["id"], exc,
                           metrics.DECODER_ERROR)
            failure, pred = metrics.DECODER_ERROR, None
    counts = metrics.score_mask(pred if failure is None else None, gt_mask)
    return {
        "id": str(row["id"]),
        "completion": completion,
        "answer": parsed.answer,
        "answer_original": answer_original,
        "concise": think_text(completion) if parsed.concise is None else parsed.concise,
        "format_ok": bool(parsed.format_ok),
        "format_failure": parsed.failure,
        "think_tokens": count_tokens(tokenizer, parsed.concise if parsed.concise is not None
                                     else measured_think(completion, prompt)),
        **counts,
        "failure": failure,
        "gt_source": gt_source,
    }


def _is_box(decoder) -> bool:
    return getattr(decoder, "name", None) == "box"


def make_decoder(name: str = "box", sam2: str | os.PathLike | None = None):
    from wise_rl.masks import get_mask_decoder

    if name == "sam2":
        if not sam2:
            raise ValueError("--mask-decoder sam2 needs --sam2 DIR (a folder saved by Sam2Model.save_pretrained)")
        return get_mask_decoder("sam2", path=sam2)
    if sam2:
        logger.warning("--sam2 is ignored with --mask-decoder %s", name)
    return get_mask_decoder(name)


# ----------------------------------------------------------------------------------------------------------------
# samples.jsonl
# ----------------------------------------------------------------------------------------------------------------
def read_samples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a ``samples.jsonl``. A last line that is not valid JSON or lacks its newline (a run killed while
    writing) is ignored (logged); a bad line anywhere else, or an id written twice (two runs appended to one file),
    is an :class:`EvalError` naming the lines."""
    path = Path(path)
    if not path.is_file():
        return []
    raw = path.read_bytes().decode("utf-8", errors="replace")
    lines = raw.split("\n")
    records = []
    first_line: dict[Any, int] = {}
    for k, line in enumerate(lines):
        last = k == len(lines) - 1
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "id" not in rec:
                raise ValueError("not an object with an id")
        except ValueError as exc:
            if last:
                logger.warning("%s: ignoring a half-written last line (%d chars); it will be recomputed", path,
                               len(line))
                continue
            raise EvalError(f"{path}, line {k + 1}: not a sample record ({exc})") from None
        if last:  # complete JSON but no trailing newline: still a half-written line
            logger.warning("%s: ignoring the last line (no newline); it will be recomputed", path)
            continue
        if rec["id"] in first_line:
            raise EvalError(f"{path}, line {k + 1}: id {rec['id']!r} was already written on line "
                            f"{first_line[rec['id']]} (two runs wrote to this folder?); keep one copy of each id, "
                            "or delete the folder and re-run")
        first_line[rec["id"]] = k + 1
        records.append(rec)
    return records


def _repair_tail(path: Path) -> None:
    """Drop a half-written last line so that appends start on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------------------------
# Metrics of a run
# ----------------------------------------------------------------------------------------------------------------
def run_metrics(records: list[dict[str, Any]], expected_ids: Iterable[str], protocol: str = "lisa",
                settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """``metrics.aggregate`` under ``protocol`` plus the other protocol's headline numbers, gt sources and the
    settings. Ids in ``expected_ids`` without a record count as ``missing_prediction`` failures."""
    expected = list(expected_ids)
    out = metrics.aggregate(records, protocol=protocol, expected_ids=expected)
    for other in metrics.PROTOCOLS:
        if other != protocol:
            alt = metrics.aggregate(records, protocol=other, expected_ids=expected)
            out[other] = {k: alt[k] for k in ("gIoU", "cIoU", "acc50", "n_scored", "n_dropped_empty_union")}
    out["gt_sources"] = dict(Counter(r.get("gt_source", "unknown") for r in records
                                     if r.get("failure") != metrics.UNKNOWN_ID))
    if out["gt_sources"].get("bbox"):
        out["note"] = ("samples without a mask (refCOCOg rows) are scored against their ground-truth bbox "
                       "rasterised in the original frame (gt_sources.bbox)")
    # how many samples the think cost was measured on (no <think> block where one was asked: not measured)
    out["think_tokens_n"] = sum(r.get("think_tokens") is not None for r in records
                                if r.get("failure") != metrics.UNKNOWN_ID)
    if settings:
        out["settings"] = settings
    return out


def think_cost_note(m: dict[str, Any]) -> str | None:
    """A note when a run's think tokens were not measured on every sample (None when they were, or when the run
    predates ``think_tokens_n``)."""
    measured, n = m.get("think_tokens_n"), m.get("n")
    if measured is None or not n or measured >= n:
        return None
    if measured == 0:
        return f"not measured: no <think> block in any of the {n} samples"
    return f"measured on {measured} of {n} samples (the others have no <think> block)"


def _fmt(value, pct: bool = False, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{100 * value:.{digits}f}" if pct else f"{value:.{digits}f}"
    return str(value)


def format_table(m: dict[str, Any], title: str | None = None) -> str:
    """A plain-text table of a metrics dict (IoUs in percent)."""
    rows = [
        ("protocol", m.get("protocol")),
        ("n (samples)", m.get("n")),
        ("n_failed", m.get("n_failed")),
        ("failures", ", ".join(f"{k}={v}" for k, v in (m.get("failures") or {}).items()) or "none"),
        ("gIoU %", _fmt(m.get("gIoU"), pct=True)),
        ("cIoU %", _fmt(m.get("cIoU"), pct=True)),
        ("acc@0.5 %", _fmt(m.get("acc50"), pct=True)),
        ("format valid %", _fmt(m.get("format_valid"), pct=True)),
        ("think tokens mean", _fmt(m.get("think_tokens_mean"))
         + (f" ({think_cost_note(m)})" if think_cost_note(m) else "")),
        ("think tokens median", _fmt(m.get("think_tokens_median"))),
        ("completion tokens mean", _fmt(m.get("completion_tokens_mean"))),
        ("latency s/sample", _fmt(m.get("latency_mean_s"), digits=4)),
        ("samples/s", _fmt(m.get("samples_per_s"))),
    ]
    if m.get("protocol") == "seg-zero" or m.get("n_dropped_empty_union"):
        rows.insert(3, ("dropped (empty union)", m.get("n_dropped_empty_union")))
    for other in metrics.PROTOCOLS:
        if isinstance(m.get(other), dict):
            o = m[other]
            rows.append((f"{other} gIoU / cIoU %", f"{_fmt(o.get('gIoU'), pct=True)} / {_fmt(o.get('cIoU'), pct=True)}"
                                                  f" (dropped {o.get('n_dropped_empty_union', 0)})"))
    width = max(len(k) for k, _ in rows)
    lines = [title] if title else []
    lines += [f"{k:<{width}}  {'' if v is None else v}" for k, v in rows]
    return "\n".join(lines)


def compare_table(this: dict[str, Any], other: dict[str, Any], this_name: str = "this",
                  other_name: str = "other") -> str:
    """One table: both runs side by side, ratios (this / other) for costs and deltas (this − other, points) for
    IoUs."""

    def ratio(a, b):
        return f"{a / b:.2f}×" if a is not None and b not in (None, 0) else "—"

    def delta(a, b):
        return f"{100 * (a - b):+.2f}" if a is not None and b is not None else "—"

    rows = [("metric", this_name, other_name, "this/other or Δ")]
    for key, label in (("gIoU", "gIoU %"), ("cIoU", "cIoU %"), ("acc50", "acc@0.5 %"),
                       ("format_valid", "format valid %")):
        rows.append((label, _fmt(this.get(key), pct=True), _fmt(other.get(key), pct=True),
                     f"Δ {delta(this.get(key), other.get(key))} pts"))
    for key, label in (("think_tokens_mean", "think tokens mean"), ("think_tokens_median", "think tokens median"),
                       ("completion_tokens_mean", "completion tokens mean"),
                       ("latency_mean_s", "latency s/sample"), ("samples_per_s", "samples/s")):
        rows.append((label, _fmt(this.get(key), digits=4 if "latency" in key else 2),
                     _fmt(other.get(key), digits=4 if "latency" in key else 2), ratio(this.get(key), other.get(key))))
    rows.append(("n / n_failed", f"{this.get('n')} / {this.get('n_failed')}",
                 f"{other.get('n')} / {other.get('n_failed')}", ""))
    widths = [max(len(str(r[c])) for r in rows) for c in range(4)]
    lines = ["  ".join(f"{str(v):<{w}}" for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, m in ((this_name, this), (other_name, other)):  # a ratio over unmeasured samples says so
        note = think_cost_note(m)
        if note:
            lines.append(f"note: think tokens of {name} {note}")
    return "\n".join(lines)


def load_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """``metrics.json`` of a run folder (or the file itself)."""
    p = Path(path)
    p = p / METRICS_FILE if p.is_dir() else p
    if not p.is_file():
        raise EvalError(f"no {METRICS_FILE} at {p} (is it an eval output folder of a finished run?)")
    return json.loads(p.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# wise-rl eval
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class EvalConfig:
    model: str
    dataset: str
    split: str | None = None
    prompt: str = "wise"
    mask_decoder: str = "box"
    sam2: str | None = None
    batch_size: int = 8
    max_new_tokens: int = 1024
    limit: int | None = None
    shard: str | None = None
    protocol: str = "lisa"
    strict_format: bool = False
    model_size: int | None = None  # the frame the model answers in; None: the dataset rows' model_size
    lisa_texts: str = "first"  # LISA folders: first text per image (LISA's evaluation) or all texts
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d.update(self.extra)
        return d


def _check_same(old: dict[str, Any], new: dict[str, Any], where: Path, keys: Sequence[str]) -> None:
    for key in keys:
        if old.get(key) != new.get(key):
            raise EvalError(
                f"{where} holds a run with {key}={old.get(key)!r}, but this run has {key}={new.get(key)!r}; "
                "use another --out folder (or delete the old one) to start a new run"
            )


def load_eval_rows(dataset: str, split: str | None, limit: int | None, model_size: int | None = None,
                   lisa_texts: str = "first"):
    """The dataset as the eval sees it (original-frame masks included; LISA folders: one sample per image, its
    first text, unless ``lisa_texts="all"``)."""
    from wise_rl.data.loaders import load_source

    kwargs: dict[str, Any] = dict(split=split, with_original_mask=True, limit=limit, lisa_texts=lisa_texts)
    if model_size is not None:
        kwargs["model_size"] = model_size
    return load_source(dataset, **kwargs)


def _unique_ids(ds, where: str) -> list[str]:
    ids = [str(x) for x in ds["id"]]
    dup = [k for k, v in Counter(ids).items() if v > 1]
    if dup:
        raise EvalError(f"{where}: ids are not unique ({len(dup)} repeated, e.g. {dup[:3]})")
    return ids


def run_eval(
    config: EvalConfig,
    out_dir: str | os.PathLike,
    generator: Callable[[Sequence[Image.Image], Sequence[str]], list[Generation]] | None = None,
    tokenizer=None,
    dataset=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate, score and aggregate (resumable); returns the metrics also written to ``OUT/metrics.json``.

    ``generator`` (images, queries) → :class:`Generation` list; default: an :class:`HFGenerator` on
    ``config.model``. ``dataset`` overrides loading ``config.dataset`` (rows in the sample schema).
    The run holds ``out_dir`` (:func:`wise_rl.outdir.hold_folder`): a second run on the same folder raises
    :class:`wise_rl.outdir.FolderLockedError` naming the process that holds it.
    """
    from wise_rl.outdir import hold_folder

    with hold_folder(out_dir, "wise-rl eval"):
        return _run_eval(config, out_dir, generator, tokenizer, dataset, progress)


def _run_eval(config, out_dir, generator, tokenizer, dataset, progress) -> dict[str, Any]:
    from tqdm.auto import tqdm

    if config.prompt not in formats.PROMPT_SPECS:
        raise ValueError(f"unknown prompt {config.prompt!r}; expected one of {', '.join(EVAL_PROMPTS)}")
    if config.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {config.batch_size}")
    metrics._check_protocol(config.protocol)
    shard = parse_shard(config.shard)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if generator is None:
        from wise_rl.models import load_model, load_processor

        processor = load_processor(config.model)
        model = load_model(config.model).eval()
        generator = HFGenerator(model, processor, config.prompt, config.max_new_tokens)
        tokenizer = processor.tokenizer
        if config.model_size is None:
            config.model_size = processor_model_size(processor)
    ds = dataset if dataset is not None else load_eval_rows(config.dataset, config.split, config.limit,
                                                            config.model_size, config.lisa_texts)
    ids = _unique_ids(ds, config.dataset)
    work = list(shard_slice(len(ids), shard))
    work_ids = [ids[k] for k in work]
    settings = config.settings() | {"n_source": len(ids), "n_shard": len(work)}

    run_file = out / RUN_FILE
    if run_file.is_file():
        old = json.loads(run_file.read_text(encoding="utf-8"))
        _check_same(old, settings, out, RESULT_KEYS + ("shard", "n_source")
                    + (("lisa_texts",) if "lisa_texts" in old else ()))  # runs from before the option
        if old.get("batch_size") != config.batch_size:
            logger.warning("%s: batch size changed (%s → %s); resumed samples may differ numerically from an "
                           "uninterrupted run", out, old.get("batch_size"), config.batch_size)
    run_file.write_text(json.dumps(settings | {"ids": work_ids}, indent=1) + "\n", encoding="utf-8")

    samples_path = out / SAMPLES_FILE
    done = {r["id"]: r for r in read_samples(samples_path)}
    stray = sorted(set(done) - set(work_ids))
    if stray:
        raise EvalError(f"{samples_path} has {len(stray)} ids that are not in this run (e.g. {stray[:3]})")
    _repair_tail(samples_path)
    decoder = make_decoder(config.mask_decoder, config.sam2)
    frame: str | int = "model" if config.model_size is None else int(config.model_size)

    batches = [work[s : s + config.batch_size] for s in range(0, len(work), config.batch_size)]
    todo = [b for b in batches if any(ids[k] not in done for k in b)]
    if done:
        logger.info("resuming: %d of %d samples already done", len(done), len(work))
    if todo and progress:  # the bar moves once per batch: say what the first one costs at most
        logger.info("%d samples in batches of %d, up to %d new tokens each (--max-new-tokens); the bar moves "
                    "after each batch", sum(ids[k] not in done for k in work), config.batch_size,
                    config.max_new_tokens)
    with open(samples_path, "a", encoding="utf-8") as fh, tqdm(
        total=len(work), initial=len(work) - sum(ids[k] not in done for k in work), desc=f"eval {config.prompt}",
        unit="sample", disable=not progress,
    ) as bar:
        for batch in todo:
            rows = [ds[k] for k in batch]
            images = [load_image(r["image"]) for r in rows]
            gens = generator(images, [r["query"] for r in rows])
            if len(gens) != len(rows):
                raise EvalError(f"the generator returned {len(gens)} completions for {len(rows)} prompts")
            for row, gen in zip(rows, gens):
                if str(row["id"]) in done:
                    continue
                rec = score_completion(gen.completion, row, config.prompt, decoder, frame=frame,
                                       tokenizer=tokenizer, strict_format=config.strict_format)
                rec.update(completion_tokens=gen.completion_tokens, latency_s=gen.latency_s)
                fh.write(dumps(rec) + "\n")
                done[rec["id"]] = rec
                bar.update(1)
            fh.flush()
            os.fsync(fh.fileno())
            gen_tokens, gen_s = sum(g.completion_tokens for g in gens), sum(g.latency_s for g in gens)
            bar.set_postfix_str(f"{gen_tokens / max(gen_s, 1e-9):.0f} tok/s, "
                                f"{gen_tokens / len(gens):.0f} tok/sample (max {config.max_new_tokens})")

    records = [done[i] for i in work_ids]
    result = run_metrics(records, work_ids, config.protocol, settings)
    (out / METRICS_FILE).write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return result


def merge_runs(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
               protocol: str | None = None) -> dict[str, Any]:
    """Combine shard folders of one eval into ``out_dir`` (``samples.jsonl`` + ``metrics.json`` + ``run.json``).

    The shards must share every result setting (model, dataset, prompt, …). An id found in two shards must carry
    the same result there (else an error); ids of the source missing from every shard count as failures
    ``missing_prediction`` (so an unfinished shard shows in the metrics).
    """
    if not run_dirs:
        raise ValueError("--merge needs at least one eval output folder")
    settings0 = None
    merged: dict[str, dict[str, Any]] = {}
    expected: list[str] = []
    seen_expected: set[str] = set()
    for d in run_dirs:
        d = Path(d)
        run_file = d / RUN_FILE
        if not run_file.is_file():
            raise EvalError(f"{d}: no {RUN_FILE}; not a wise-rl eval output folder")
        settings = json.loads(run_file.read_text(encoding="utf-8"))
        if settings0 is None:
            settings0 = settings
        else:
            _check_same(settings0, settings, d, RESULT_KEYS + ("n_source", "protocol"))
        for i in settings.get("ids", []):
            if i not in seen_expected:
                seen_expected.add(i)
                expected.append(i)
        for rec in read_samples(d / SAMPLES_FILE):
            prev = merged.get(rec["id"])
            if prev is not None:
                diff = [f for f in RESULT_FIELDS if prev.get(f) != rec.get(f)]
                if diff:
                    raise EvalError(f"id {rec['id']!r} appears in two shards with different {', '.join(diff)} "
                                    f"(second copy in {d})")
                continue
            merged[rec["id"]] = rec
    assert settings0 is not None
    n_source = settings0.get("n_source")
    if n_source is not None and len(seen_expected) != n_source:
        logger.warning("merged shards cover %d of the source's %d samples; the rest are not in the metrics",
                       len(seen_expected), n_source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    order = {i: k for k, i in enumerate(expected)}
    records = sorted(merged.values(), key=lambda r: order.get(r["id"], len(order)))
    with open(out / SAMPLES_FILE, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(dumps(rec) + "\n")
    settings = {k: v for k, v in settings0.items() if k != "ids"} | {
        "shard": None, "merged_from": [str(d) for d in run_dirs], "n_shard": len(expected)}
    (out / RUN_FILE).write_text(json.dumps(settings | {"ids": expected}, indent=1) + "\n", encoding="utf-8")
    result = run_metrics(records, expected, protocol or settings0.get("protocol", "lisa"), settings)
    (out / METRICS_FILE).write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return result


# ----------------------------------------------------------------------------------------------------------------
# wise-rl score
# ----------------------------------------------------------------------------------------------------------------
def read_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """``{"id": …, "completion": …}`` per line; a bad line or a repeated id is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"no predictions file at {path}")
    preds, first_line = [], {}
    with open(path, encoding="utf-8") as fh:
        for k, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, or a number past int()'s digit limit
                raise EvalError(f"{path}, line {k}: not JSON ({str(exc)[:200]})") from None
            if not isinstance(obj, dict) or "id" not in obj or "completion" not in obj:
                raise EvalError(f"{path}, line {k}: expected an object with 'id' and 'completion'")
            rid = str(obj["id"])
            if rid in first_line:
                raise EvalError(f"{path}, line {k}: id {rid!r} repeats line {first_line[rid]}")
            first_line[rid] = k
            obj["id"] = rid
            obj["completion"] = formats.completion_text(obj["completion"])
            preds.append(obj)
    return preds


def parse_frame(value: str | int | None) -> str | int:
    """``--frame``: ``model`` (each row's model_size, 840 for real data), ``original`` or an int S."""
    if value in (None, "model"):
        return "model"
    if value == "original":
        return "original"
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--frame must be 'model', 'original' or a frame size such as 840, got {value!r}") from None
    if size <= 0:
        raise ValueError(f"--frame size must be positive, got {size}")
    return size


def _frame_mismatch(dataset, frame: str | int) -> str | None:
    """A warning when an explicit frame size differs from the model frame the rows carry (``model_size``)."""
    if not isinstance(frame, int) or "model_size" not in dataset.column_names:
        return None
    sizes = sorted({int(s) for s in dataset["model_size"] if s is not None})
    if not sizes or sizes == [frame]:
        return None
    return (f"--frame {frame} rescales every answer from a {frame}×{frame} frame, but the rows' own model frame "
            f"is {'/'.join(map(str, sizes))} (model_size): if the predictions were made on the rows' images, use "
            "--frame model (the default)")


def score_predictions(
    dataset,
    predictions: str | os.PathLike | list[dict[str, Any]],
    prompt: str = "wise",
    mask_decoder: str = "box",
    sam2: str | None = None,
    frame: str | int = "model",
    protocol: str = "lisa",
    tokenizer=None,
    strict_format: bool = False,
    progress: bool = True,
    dataset_name: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score existing completions against ``dataset`` (rows in the sample schema, with original masks).

    Every dataset sample is in ``n``: one without a prediction scores I = 0, U = |T| with failure
    ``missing_prediction``; a prediction whose id is not in the dataset is a failure ``unknown_id`` (reported, not
    a sample). Returns ``(metrics, records)``.
    """
    from tqdm.auto import tqdm

    metrics._check_protocol(protocol)
    frame = parse_frame(frame)
    preds = read_predictions(predictions) if not isinstance(predictions, list) else predictions
    by_id = {str(p["id"]): p for p in preds}
    ids = _unique_ids(dataset, dataset_name or "dataset")
    known = set(ids)
    frame_warning = _frame_mismatch(dataset, frame)
    if frame_warning:
        logger.warning("%s", frame_warning)
    decoder = make_decoder(mask_decoder, sam2)
    records = []
    for k in tqdm(range(len(ids)), desc="score", unit="sample", disable=not progress):
        row = dataset[k]
        pred = by_id.get(ids[k])
        gt = ground_truth(row)
        if pred is None:
            counts = metrics.score_mask(None, gt[0])
            records.append({"id": ids[k], "completion": None, "answer": None, **counts, "format_ok": False,
                            "failure": metrics.MISSING_PREDICTION, "gt_source": gt[1]})
            continue
        rec = score_completion(pred["completion"], row, prompt, decoder, frame=frame, tokenizer=tokenizer,
                               strict_format=strict_format, gt=gt)
        for key in ("completion_tokens", "latency_s"):
            if pred.get(key) is not None:
                rec[key] = pred[key]
        records.append(rec)
    unknown = [p["id"] for p in preds if p["id"] not in known]
    for rid in unknown:
        records.append({"id": rid, "completion": by_id[rid]["completion"], "intersection": 0, "union": 0,
                        "iou": 0.0, "failure": metrics.UNKNOWN_ID})
    if unknown:
        logger.warning("%d prediction ids are not in the dataset (e.g. %s); counted as failures %r", len(unknown),
                       unknown[:3], metrics.UNKNOWN_ID)
    missing = sum(r["failure"] == metrics.MISSING_PREDICTION for r in records)
    if missing:
        logger.warning("%d dataset samples have no prediction; scored IoU 0 (%r)", missing,
                       metrics.MISSING_PREDICTION)
    settings = {"dataset": dataset_name, "prompt": prompt, "mask_decoder": mask_decoder, "sam2": sam2,
                "frame": frame, "strict_format": strict_format,
                "predictions": None if isinstance(predictions, list) else str(predictions)}
    result = run_metrics(records, ids, protocol, settings)
    result["unknown_ids"] = unknown
    if frame_warning:
        result["frame_warning"] = frame_warning
    result["missing_ids"] = [r["id"] for r in records if r["failure"] == metrics.MISSING_PREDICTION]
    return result, records
