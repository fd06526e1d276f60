"""Every data source → rows in the one sample schema (``wise_rl/data/schema.py``), ground truth in the model frame:
``load_source(src, ...)`` → ``datasets.Dataset`` with ``sample_features(with_original_mask)``.

Sources (``wise_rl.data._sources``): a ``datasets.Dataset`` / ``DatasetDict``, a ``save_to_disk`` folder, parquet /
jsonl / json files or a folder of them, a LISA raw folder (``NAME.jpg`` + ``NAME.json``), a hub name.
Kinds (auto-detected from the columns / files; force one with ``kind=``): ``refcocog``, ``reasonseg``, ``schema``
(``wise_rl.data._converters``: columns, frames and ids per kind), ``mapped`` (your own columns named by
``columns=``, ``wise_rl.data.columns``) and ``lisa`` (``wise_rl.data.lisa``: read as LISA's
evaluation reads it, first text per image unless ``lisa_texts="all"``; no-object samples have ``gt_bbox`` None).
Shared pieces (errors, cell readers, masks → bbox/points, image re-encoding): ``wise_rl.data._rowtools``.

Validation: a bad row raises :class:`DataError` naming the source, the row (index and id), the column and the reason.
With ``skip_invalid=True`` bad rows are skipped instead, never silently: a warning logs the counts per reason, and
the counts come back through the ``report`` dict argument (see :func:`load_source`). Source-level problems (missing
column, unknown kind, unreadable source, no valid rows at all) always raise.
Duplicate ids are made unique deterministically, in source order: the n-th repeat of ``X`` becomes ``X~n`` (n ≥ 2),
counted in ``report["renamed_ids"]`` and logged.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from typing import Any

from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm

from wise_rl import frames
from wise_rl.data._converters import _dataset_rows
from wise_rl.data._rowtools import KINDS, REQUIRED_COLUMNS, DataError
from wise_rl.data._sources import _check_columns, _detect_kind, _extra_columns, _resolve
from wise_rl.data.columns import ColumnMap, mapped_dataset, mapped_row, parse_columns
from wise_rl.data.schema import sample_features
from wise_rl.errors import ConfigError

logger = logging.getLogger(__name__)

_KIND_ALIASES = {"shapeworld": "schema", "refcocog_840": "refcocog", "lisa_folder": "lisa"}
_PROGRESS_MIN_ROWS = 1000
_CHUNK_ROWS = 256


def load_source(
    src: Any,
    split: str | None = None,
    model_size: int | None = None,
    skip_invalid: bool = False,
    with_original_mask: bool = False,
    limit: int | None = None,
    kind: str | None = None,
    report: dict | None = None,
    lisa_texts: str = "first",
    columns: Any = None,
    frame: Any = None,
) -> Dataset:
    """Load ``src`` into a ``datasets.Dataset`` with ``sample_features(with_original_mask)``.

    Args:
        src: Dataset / DatasetDict, a path (save_to_disk folder, parquet/jsonl/json file or folder, LISA folder)
            or a hub dataset name.
        split: split of a DatasetDict / hub dataset / split-grouped folder (default ``'test'`` if present, else
            the only split).
        model_size: side S of the square model frame. ``None`` means 840 (``frames.DEFAULT_MODEL_SIZE``) for raw
            sources and the rows' own ``model_size`` for rows already in the schema (ShapeWorld renders at 112).
        skip_invalid: skip bad rows (counted per reason, logged, reported) instead of raising :class:`DataError`.
        with_original_mask: also fill ``original_mask`` (W×H L image, same values as ``gt_mask``) or None.
        limit: stop after this many output rows (source order).
        kind: force the source kind (``refcocog``, ``reasonseg``, ``lisa``, ``schema``/``shapeworld``,
            ``mapped``: columns named as wise_rl names them, see ``columns``).
        report: optional dict filled in place with ``source``, ``kind``, ``rows_read`` (source rows / LISA files
            visited), ``rows_out``, ``skipped`` (reason code → count), ``skipped_examples`` (reason code → up to 5
            error messages), ``renamed_ids`` (duplicate ids made unique), ``thin_targets`` (ids of rows whose
            target is thinner than a model-frame pixel: their ``gt_mask`` keeps every pixel the target touches) and
            ``no_points`` (rows with a box and no points).
        lisa_texts: LISA folders only: ``first`` (LISA's evaluation: one sample per image, its first text, id =
            the image name) or ``all`` (one sample per text, ids ``NAME#k``).
        frame: the frame ``gt_bbox``/``gt_points`` are written in (``wise_rl.frames``: ``"abs840"``, ``"rel1000"``,
            a ``Frame``); None: ``abs{model_size}``. Every row records it in its ``frame`` column.
        columns: your own data: which of your columns is which (``"query=problem,bbox=box"``, a mapping or a
            ``wise_rl.data.columns.ColumnMap``; names, box format and units in ``wise_rl.data.columns``). Makes
            the source the ``mapped`` kind; a bad mapping raises ``ConfigError``, a missing column ``DataError``.
    """
    kind, cmap = _check_arguments(model_size, limit, kind, lisa_texts, columns)
    target, model_size = _target_frame(frame, model_size)
    bad_lines: list[DataError] | None = [] if skip_invalid else None  # unparseable json lines, when skipped
    label, dataset, lisa_dir, base_dir = _resolve(src, split, kind, bad_lines)
    kind, rows, n_in, extra_features = _source_rows(label, dataset, lisa_dir, base_dir, kind, cmap, model_size,
                                                    with_original_mask, lisa_texts)

    stats = {"source": label, "kind": kind, "rows_read": 0, "rows_out": 0, "skipped": Counter(),
             "skipped_examples": {}, "renamed_ids": 0, "thin_targets": [], "no_points": 0}
    features = sample_features(with_original_mask)
    features.update(extra_features)
    columns = list(features)
    chunks: list[Dataset] = []
    buffer: dict[str, list] = {c: [] for c in columns}
    seen: dict[str, int] = {}
    used: set[str] = set()
    for item in bad_lines or []:  # counted like any other skipped row
        stats["rows_read"] += 1
        _count_skip(stats, item)

    progress = tqdm(total=n_in, desc=f"load {kind}", unit="row", disable=n_in < _PROGRESS_MIN_ROWS)
    try:
        for item in rows:
            progress.update(1)
            stats["rows_read"] += 1
            if isinstance(item, DataError):
                if not skip_invalid:
                    raise item
                _count_skip(stats, item)
                continue
            for out in item:
                out["id"] = _unique_id(out["id"], seen, used, stats)
                _in_frame(out, target)
                if out.pop("_thin", False):
                    stats["thin_targets"].append(out["id"])
                stats["no_points"] += out.get("gt_bbox") is not None and out.get("gt_points") is None
                for c in columns:
                    buffer[c].append(out.get(c))
                stats["rows_out"] += 1
                if len(buffer["id"]) >= _CHUNK_ROWS:
                    chunks.append(Dataset.from_dict(buffer, features=features))
                    buffer = {c: [] for c in columns}
                if limit is not None and stats["rows_out"] >= limit:
                    break
            if limit is not None and stats["rows_out"] >= limit:
                break
    finally:
        progress.close()
        rows.close()

    if buffer["id"]:
        chunks.append(Dataset.from_dict(buffer, features=features))
    stats["skipped"] = dict(stats["skipped"])
    if report is not None:
        report.clear()
        report.update(stats)
    n_skipped = _log_summary(kind, label, stats)
    if not chunks:
        detail = f" ({n_skipped} skipped: {dict(stats['skipped'])})" if n_skipped else ""
        raise DataError(label, None, None, f"no valid rows{detail}", code="no_rows", kind=kind)
    return chunks[0] if len(chunks) == 1 else concatenate_datasets(chunks)


def _count_skip(stats: dict, error: DataError) -> None:
    """One skipped row in ``stats``: its reason counted, its message kept among the first five of that reason."""
    stats["skipped"][error.code] += 1
    examples = stats["skipped_examples"].setdefault(error.code, [])
    if len(examples) < 5:
        examples.append(str(error))


def _log_summary(kind: str, label: str, stats: dict) -> int:
    """Warn about skipped rows and renamed ids, then the notes (:func:`_log_notes`); returns the skipped count."""
    n_skipped = sum(stats["skipped"].values())
    if n_skipped:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(stats["skipped"].items()))
        logger.warning("%s rows %r: skipped %d invalid of %d (%s)", kind, label, n_skipped, stats["rows_read"],
                       counts)
    if stats["renamed_ids"]:
        logger.warning("%s rows %r: %d duplicate ids renamed to ID~n", kind, label, stats["renamed_ids"])
    _log_notes(kind, label, stats)
    return n_skipped


def _target_frame(frame, model_size) -> tuple[frames.Frame | None, int | None]:
    """``frame=`` → (the frame rows are written in, the side of their square image). ``absS`` fixes the image
    side to S (a different ``model_size`` is an error); ``rel1000`` keeps ``model_size``; None: both as before."""
    if frame is None:
        return None, model_size
    target = frames.Frame.parse(frame)
    if not target.relative:
        if model_size is not None and int(model_size) != target.side:
            raise ConfigError(f"frame {target} and model_size {model_size} disagree: an absolute frame is pixels "
                              "of the model_size² image; give one of them")
        return target, target.side
    return target, model_size


def _in_frame(out: dict, target: frames.Frame | None) -> None:
    """A converted row's ground truth (pixels of its ``model_size``² image) → ``target`` (None: stays there), and
    the row's ``frame`` column set to the frame it is written in (:func:`wise_rl.frames.convert_bbox`)."""
    canvas = frames.Frame(int(out["model_size"]))
    target = target or canvas
    if target != canvas:
        if out.get("gt_bbox") is not None:
            out["gt_bbox"] = frames.convert_bbox(out["gt_bbox"], canvas, target)
        if out.get("gt_points") is not None:
            out["gt_points"] = frames.convert_points(out["gt_points"], canvas, target)
    out["frame"] = str(target)


def _check_arguments(model_size, limit, kind, lisa_texts, columns) -> tuple[str | None, ColumnMap | None]:
    """The source kind (aliases resolved; ``mapped`` when ``columns`` is given) and the column mapping."""
    if model_size is not None and int(model_size) <= 0:
        raise ValueError(f"model_size must be positive, got {model_size}")
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if kind is not None:
        kind = _KIND_ALIASES.get(kind.lower(), kind.lower())
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)} (or 'shapeworld')")
    if lisa_texts not in ("first", "all"):
        raise ValueError(f"lisa_texts must be 'first' or 'all', got {lisa_texts!r}")
    cmap = parse_columns(columns, "columns")
    if cmap is not None and kind not in (None, "mapped"):
        raise ValueError(f"columns= makes the source the 'mapped' kind; kind={kind!r} contradicts it")
    if cmap is not None or kind == "mapped":
        return "mapped", cmap or ColumnMap()
    return kind, None


def _source_rows(label, dataset, lisa_dir, base_dir, kind, cmap, model_size, with_original_mask, lisa_texts):
    """→ (kind, generator of row lists or DataErrors, number of source rows, features of the extra columns)."""
    if lisa_dir is not None:
        from wise_rl.data.lisa import lisa_rows  # OpenCV, only for LISA folders

        rows, n_in = lisa_rows(lisa_dir, model_size or frames.DEFAULT_MODEL_SIZE, with_original_mask, label,
                               lisa_texts)
        return "lisa", rows, n_in, {}
    kind = kind or _detect_kind(dataset, label)
    if kind == "lisa":
        raise DataError(label, None, None, "kind='lisa' needs a folder of NAME.jpg + NAME.json files",
                        code="bad_source")
    converter = None
    if kind == "mapped":
        dataset, cmap, extras, clashing = mapped_dataset(dataset, cmap, label)
        if clashing:
            logger.warning("mapped rows %r: columns %s are not mapped and bear a name of the sample schema; "
                           "left out (map them, or rename them)", label, clashing)
        converter = functools.partial(mapped_row, cmap=cmap)
    else:
        _check_columns(dataset, kind, label)
        extras = _extra_columns(dataset, kind, label, model_size)
    rows, n_in = _dataset_rows(dataset, kind, label, model_size, with_original_mask, base_dir, extras, converter)
    return kind, rows, n_in, {c: dataset.features[c] for c in extras}


def _log_notes(kind: str, label: str, stats: dict) -> None:
    """Say once per load what happens to box-only rows and to targets thinner than a model pixel."""
    thin = stats["thin_targets"]
    if thin:
        logger.warning("%s rows %r: %d targets thinner than one model-frame pixel (ids %s%s); their gt_mask keeps "
                       "every model pixel the target touches, and eval scores on the original-resolution mask",
                       kind, label, len(thin), thin[:5], " …" if len(thin) > 5 else "")
    if stats["no_points"]:
        logger.info("%s rows %r: %d of %d rows have a box and no points (no points and no mask given): the "
                    "points reward gives them None, which TRL leaves out of the reward sum; SFT targets put the "
                    "box centre as both points; eval and score never use points", kind, label,
                    stats["no_points"], stats["rows_out"])


def _unique_id(row_id: str, seen: dict[str, int], used: set[str], stats: dict) -> str:
    if row_id not in used:
        used.add(row_id)
        seen[row_id] = 1
        return row_id
    n = seen.get(row_id, 1)
    while True:
        n += 1
        candidate = f"{row_id}~{n}"
        if candidate not in used:
            break
    seen[row_id] = n
    used.add(candidate)
    stats["renamed_ids"] += 1
    return candidate


__all__ = ["DataError", "KINDS", "REQUIRED_COLUMNS", "load_source"]
