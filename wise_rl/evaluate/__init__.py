"""``wise-rl eval``: batched greedy generation stopped at the answer, resumable ``samples.jsonl``, ``metrics.json``;
``merge_runs`` joins shards. Generation lives in :mod:`wise_rl.evaluate.generation`, scoring one sample, the run's
metrics and the tables in :mod:`wise_rl.evaluate.scoring` (both re-exported here: ``evaluate.HFGenerator``,
``evaluate.score_predictions``, ``evaluate.format_table`` …).

Output folder of a run::

    run.json       the settings (checked on resume: a different model/dataset/prompt/... is an error)
    samples.jsonl  one JSON object per sample, appended and flushed as each batch finishes
    metrics.json   metrics.aggregate(...) + settings, written at the end (also by --merge)

Resume: ids already in ``samples.jsonl`` are skipped; a half-written last line (a killed run) is ignored and that
sample recomputed. Batches have fixed boundaries over the run's id list, and a batch that is partly done is
regenerated whole (only its missing ids are written), so every sample is generated in the same batch composition
as in an uninterrupted run: same completions, same metrics. Unusable folders raise :class:`EvalError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wise_rl import formats, frames, metrics
from wise_rl.data.images import load_image
from wise_rl.evaluate.generation import (  # noqa: F401  (re-exported: callers use evaluate.HFGenerator etc.)
    Generation,
    HFGenerator,
    chat_messages,
    cut_at_stop,
    processor_model_size,
)
from wise_rl.evaluate.scoring import (  # noqa: F401  (re-exported: callers use evaluate.score_predictions etc.)
    METRICS_FILE,
    EvalError,
    _unique_ids,
    compare_table,
    count_tokens,
    format_table,
    ground_truth,
    load_metrics,
    make_decoder,
    measured_think,
    original_image,
    parse_frame,
    read_predictions,
    run_metrics,
    score_completion,
    score_predictions,
    think_cost_note,
    think_text,
)

logger = logging.getLogger(__name__)

SAMPLES_FILE, RUN_FILE = "samples.jsonl", "run.json"
EVAL_PROMPTS = ("wise", "wise-s", "verbose")
# Settings that change the results: a resumed or merged run must agree on all of them.
RESULT_KEYS = ("model", "dataset", "split", "prompt", "mask_decoder", "sam2", "max_new_tokens", "limit",
               "strict_format", "model_size", "columns")
# Fields that must be equal when the same id appears in two merged shards.
RESULT_FIELDS = ("completion", "answer", "intersection", "union", "iou", "failure")


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
    model_size: int | None = None  # the square of an absolute frame; None: the dataset rows' model_size
    frame: str | None = None  # the frame the model answers in (wise_rl.frames name); None: resolved at run time
    lisa_texts: str = "first"  # LISA folders: first text per image (LISA's evaluation) or all texts
    columns: str | None = None  # your own data: name=column,… (wise_rl.data.columns); None: the source's kind
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d.update(self.extra)
        return d


def _check_same(old: dict[str, Any], new: dict[str, Any], where: Path, keys: Sequence[str]) -> None:
    """Raise :class:`EvalError` naming the first of ``keys`` whose value differs. The model is identified by its
    weights (``model_weights``, :func:`wise_rl.models.folder_check.weights_digest`) when both runs recorded them:
    the same path retrained is another model, the same weights moved elsewhere are not."""
    if old.get("model_weights") is not None and new.get("model_weights") is not None:
        keys = [("model_weights" if k == "model" else k) for k in keys]
    for key in keys:
        if old.get(key) != new.get(key):
            raise EvalError(
                f"{where} holds a run with {key}={old.get(key)!r}, but this run has {key}={new.get(key)!r}; "
                "use another --out folder (or delete the old one) to start a new run"
            )


def _weights(config) -> str | None:
    """The digest of the evaluated model's weights (None: not a local folder, e.g. a scripted generator)."""
    from wise_rl.models.folder_check import weights_digest

    folder = Path(str(config.model)).expanduser()
    return weights_digest(folder) if folder.is_dir() else None


def load_eval_rows(dataset: str, split: str | None, limit: int | None, model_size: int | None = None,
                   lisa_texts: str = "first", columns: Any = None, frame: str | None = None):
    """The dataset as the eval sees it (original-frame masks and images included, so that scoring and SAM2 work at
    the original resolution; LISA folders: one sample per image, its first text, unless ``lisa_texts="all"``;
    ``columns``: a mapping of your own columns, see ``wise_rl.data.columns``)."""
    from wise_rl.data.loaders import load_source

    kwargs: dict[str, Any] = dict(split=split, with_original_mask=True, limit=limit, lisa_texts=lisa_texts,
                                  columns=columns)
    if model_size is not None:
        kwargs["model_size"] = model_size
    if frame is not None:  # the rows' ground truth in the frame the model answers in
        kwargs["frame"] = frame
    return load_source(dataset, **kwargs)


def _model_and_rows(config: EvalConfig, generator, tokenizer, dataset):
    """→ (generator, tokenizer, rows). Without a ``generator``: an :class:`HFGenerator` on ``config.model``, and
    ``config.frame`` settled when not given (:func:`wise_rl.models.info.resolve_frame`: ``wise_rl.json``, else the
    family's native frame, else the square the processor pins) — an absolute frame also fixes ``model_size``. The
    rows (unless ``dataset`` is given) are loaded with their ground truth in that frame."""
    if generator is None:
        from wise_rl.models import info, load_model, load_processor

        processor = load_processor(config.model)
        model = load_model(config.model).eval()
        generator = HFGenerator(model, processor, config.prompt, config.max_new_tokens)
        tokenizer = processor.tokenizer
        if config.frame is None and config.model_size is not None:
            config.frame = f"abs{int(config.model_size)}"
        config.frame = str(info.resolve_frame(config.model, config.frame, processor_model_size(processor)))
    if config.frame is not None:
        config.frame = str(frames.Frame.parse(config.frame))
        if not frames.Frame.parse(config.frame).relative:
            config.model_size = frames.Frame.parse(config.frame).side
    ds = dataset if dataset is not None else load_eval_rows(config.dataset, config.split, config.limit,
                                                            config.model_size, config.lisa_texts, config.columns,
                                                            config.frame)
    return generator, tokenizer, ds


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

    generator, tokenizer, ds = _model_and_rows(config, generator, tokenizer, dataset)
    ids = _unique_ids(ds, config.dataset)
    work = list(shard_slice(len(ids), shard))
    work_ids = [ids[k] for k in work]
    settings = config.settings() | {"n_source": len(ids), "n_shard": len(work), "model_weights": _weights(config)}

    run_file = out / RUN_FILE
    if run_file.is_file():
        old = json.loads(run_file.read_text(encoding="utf-8"))
        _check_same(old, settings, out, RESULT_KEYS + ("shard", "n_source")
                    + tuple(k for k in ("lisa_texts", "frame") if k in old))  # runs from before the options
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
    frame: str | int = config.frame or ("model" if config.model_size is None else int(config.model_size))

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
        unit="sample", disable=not progress, smoothing=0,  # ETA from the mean rate: the bar moves per batch
    ) as bar:
        for i, batch in enumerate(todo, 1):
            bar.set_postfix_str(f"generating batch {i}/{len(todo)} (up to {config.max_new_tokens} tokens/sample)")
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
    result = run_metrics(records, work_ids, config.protocol, settings) | token_limit_and_machine(
        records, config.max_new_tokens)
    (out / METRICS_FILE).write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return result


def token_limit_and_machine(records: list[dict[str, Any]], max_new_tokens: int, machine=None) -> dict[str, Any]:
    """``n_hit_token_limit``: samples whose generation ran to ``max_new_tokens`` (a model that never stops; their
    latency is the cap's, not the answer's), and ``machine``: the threads and CPU the latencies were measured with
    (default: this process's, :func:`wise_rl.threads.threads_record`)."""
    from wise_rl.threads import threads_record

    hit = sum(int(r.get("completion_tokens") or 0) >= max_new_tokens for r in records) if max_new_tokens else 0
    if hit:
        logger.warning("%d of %d samples hit --max-new-tokens %d (the generation did not stop): their completions "
                       "are cut and their latency is the cap's", hit, len(records), max_new_tokens)
    return {"n_hit_token_limit": hit, "max_new_tokens": max_new_tokens,
            "machine": threads_record() if machine is None else machine}


def _shards_machine(run_dirs) -> dict[str, Any] | None:
    """The ``machine`` of the shards' metrics.json: the one they share, else ``{"shards": [each]}``."""
    found = [json.loads((Path(d) / METRICS_FILE).read_text(encoding="utf-8")).get("machine") for d in run_dirs
             if (Path(d) / METRICS_FILE).is_file()]
    if not found:
        return None
    return found[0] if all(m == found[0] for m in found) else {"shards": found}


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
    result |= token_limit_and_machine(records, settings0.get("max_new_tokens") or 0, _shards_machine(run_dirs) or {})
    (out / METRICS_FILE).write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return result
