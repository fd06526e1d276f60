"""Scoring completions and tables of metrics (``wise-rl eval`` and ``wise-rl score`` share this code)::

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
Unusable files raise :class:`EvalError` naming the file, line or id.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wise_rl import formats, frames, metrics, tokens
from wise_rl.data.images import load_image
from wise_rl.data.schema import as_mask_array
from wise_rl.errors import EvalError  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


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
    """Think tokens of ``text`` by the project's one rule, :func:`wise_rl.tokens.count_tokens`, with the policy
    tokenizer; None without a tokenizer or without a think text: evaluation reports the headline cost in tokens
    only, never the rule's word fallback (``think_cost_note`` then says why it is missing)."""
    if tokenizer is None or text is None:
        return None
    return tokens.count_tokens(text, tokenizer)


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

    box = frames.bbox_to_original(row["gt_bbox"], (width, height), frames.row_frame(row))
    return rasterize_bbox(box, (width, height)), "bbox"


def original_image(row: dict[str, Any]) -> Image.Image:
    """The image in the original frame, the one SAM2 segments: the row's ``original_image``, which the loaders keep
    for evaluation (``with_original_mask``) from every source that has one (your own data, ReasonSeg, LISA);
    else the model-frame image resized back to ``image_size`` — only for sources that store no original
    (refCOCOg_840 stores 840² images; exact for ShapeWorld, where both frames are the same)."""
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

    ``frame``: the frame the answer's coordinates are in — ``"model"`` (the row's own frame,
    :func:`wise_rl.frames.row_frame`), a frame (``"rel1000"``, ``"abs840"``, an int ``S`` = ``absS``) or
    ``"original"`` (already in original pixels).
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
            source = frames.row_frame(row) if frame == "model" else frames.Frame.parse(frame)
            answer_original = frames.answer_to_original(parsed.answer, (width, height), source)
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
    # ... and how many had a <think> block at all (counted without a tokenizer: the reason the cost is missing)
    out["think_blocks_n"] = sum(formats.THINK_OPEN in (r.get("completion") or "") for r in records
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
    blocks = m.get("think_blocks_n")
    if measured == 0 and blocks:  # the blocks are there: nothing counted them
        return (f"not measured: no tokenizer to count them ({blocks} of {n} samples have a <think> block; "
                "wise-rl score --tokenizer MODEL_DIR)")
    if measured == 0:
        return f"not measured: no <think> block in any of the {n} samples"
    return f"measured on {measured} of {n} samples (the others have no <think> block)"


def _machine_note(m: dict[str, Any]) -> str:
    """`` (N threads, CPU)`` from ``m["machine"]`` (empty for runs recorded without it)."""
    machine = m.get("machine") or {}
    if not machine.get("threads"):
        return ""
    return f" ({machine['threads']} thread{'s' if machine['threads'] != 1 else ''}, {machine.get('cpu_model')})"


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
        ("latency s/sample", _fmt(m.get("latency_mean_s"), digits=4) + _machine_note(m)),
        ("samples/s", _fmt(m.get("samples_per_s"))),
    ]
    if m.get("n_hit_token_limit"):
        rows.append(("hit the token limit", f"{m['n_hit_token_limit']} of {m.get('n')} samples (--max-new-tokens "
                                            f"{m.get('max_new_tokens')}: cut, latency is the cap's)"))
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


def _unique_ids(ds, where: str) -> list[str]:
    ids = [str(x) for x in ds["id"]]
    dup = [k for k, v in Counter(ids).items() if v > 1]
    if dup:
        raise EvalError(f"{where}: ids are not unique ({len(dup)} repeated, e.g. {dup[:3]})")
    return ids


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
    """``--frame``: ``model`` (each row's own frame), ``original``, a frame name (``rel1000``, ``abs840``: returned
    as its name) or an int S (``absS``, returned as the int)."""
    if value in (None, "model"):
        return "model"
    if value == "original":
        return "original"
    if isinstance(value, frames.Frame) or (isinstance(value, str) and not value.strip().isdigit()):
        try:
            return str(frames.Frame.parse(value))
        except ValueError:
            raise ValueError(f"--frame must be 'model', 'original', rel1000, absS or a size such as 840, got "
                             f"{value!r}") from None
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--frame must be 'model', 'original' or a frame size such as 840, got {value!r}") from None
    if size <= 0:
        raise ValueError(f"--frame size must be positive, got {size}")
    return size


def _frame_mismatch(dataset, frame: str | int) -> str | None:
    """A warning when an explicit frame differs from the frame the rows are written in (``frame``, else
    ``abs{model_size}``)."""
    if frame in ("model", "original") or "model_size" not in dataset.column_names:
        return None
    names = dataset["frame"] if "frame" in dataset.column_names else [None] * len(dataset)
    own = sorted({str(frames.row_frame({"frame": f, "model_size": s}))
                  for f, s in zip(names, dataset["model_size"]) if f or s is not None})
    given = str(frames.Frame.parse(frame))
    if not own or own == [given]:
        return None
    return (f"--frame {frame} reads every answer in {given}, but the rows are written in {'/'.join(own)} (their frame / model_size): if the "
            "predictions were made on the rows' images by the model the rows were built for, use --frame model "
            "(the default)")


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
