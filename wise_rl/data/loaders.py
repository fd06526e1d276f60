"""Every data source → rows in the one sample schema (``wise_rl/data/schema.py``), ground truth in the model frame.

``load_source(src, ...)`` accepts:

* a ``datasets.Dataset`` / ``DatasetDict`` object;
* a ``save_to_disk`` folder (Dataset or DatasetDict);
* a parquet / jsonl / json file, or a folder of them (files named ``train-*.parquet``, ``test.jsonl`` … are grouped
  into splits by the name before the first ``-``, when every name starts with a split name);
* a LISA raw folder (``NAME.jpg`` + ``NAME.json``);
* a hub name, loaded with ``datasets.load_dataset(name, split=...)`` (offline here: the failure says so).

A ``DatasetDict`` (or a split-grouped folder) gives ``split``; with ``split=None`` the loader takes ``'test'`` when
present, else the only split, and otherwise raises naming the splits.

Source kinds (auto-detected from the columns / files; force one with ``kind=``):

``refcocog``  rows ``id, problem, solution, image, img_height, img_width`` (Ricky06662/refCOCOg_2k_840). ``solution``
    is ``<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>`` in the frame of the stored image (840×840 there);
    for another ``model_size`` both are rescaled by ``model_size / 840`` (``frames.bbox_to_model`` with the stored
    image as the "original"). ``image_size`` = ``[img_width, img_height]``, the original photo. No mask.
``reasonseg`` rows ``image`` (original size), ``text``, ``mask`` (H×W nested bools), ``image_id``, ``ann_id``,
    ``img_height``, ``img_width`` (Ricky06662/ReasonSeg_test / _val). ``id = f"{image_id}_{ann_id}"``. A ``text``
    given as a string gives one row; a list gives one row per query with id suffix ``#k`` (k = 0, 1, …).
``lisa``      a folder of ``NAME.jpg`` + ``NAME.json`` (``text`` list, ``is_sentence``, ``shapes``), read as LISA's
    evaluation reads it (``wise_rl.data.lisa``): one sample per image with its first text, id ``NAME``
    (``lisa_texts="all"``: one per text, ids ``NAME#k``); the mask rasterised with OpenCV exactly as LISA's
    ``get_mask_from_json``; a JSON without target pixels is a no-object sample (``gt_bbox``/``gt_points`` None,
    empty target). ``is_sentence`` is not in the schema.
``schema``    rows already in the sample schema (ShapeWorld ``save_to_disk`` output): validated and passed through;
    rescaled through ``frames`` only when ``model_size`` is given and differs from the rows' own. Extra columns
    (ShapeWorld's ``family``, ``target_index``, ``shape_boxes``) are kept unchanged, or dropped with a warning when
    the rows are rescaled (they may hold model-frame coordinates).

Masks, bbox and points: for ``reasonseg`` / ``lisa`` the tight pixel-inclusive bbox and the two inscribed-circle
points are derived from the ORIGINAL mask (``geometry.mask_bbox`` / ``inscribed_circle_points``) and mapped to the
model frame with ``frames``: ``x' = x · S / W``, ``y' = y · S / H`` (so ``frames.bbox_to_original`` restores them
exactly). ``gt_mask`` is the original mask resized by nearest neighbour to S×S (1 target, 0 background, 255
ignore); ``original_mask`` (``with_original_mask=True``) is the W×H original.

Images: every image is read as a viewer shows it (``wise_rl.data.images.load_image``: EXIF orientation applied,
any mode to RGB), so ``image_size`` and annotations drawn on the shown image agree. ``image`` is the original resized to S×S RGB (bicubic, ``frames.image_to_model``). Bytes already S×S RGB
are passed through untouched; otherwise a JPEG source is re-encoded as JPEG (quality 95) and anything else as PNG,
so that a 2,000-row source stays a few hundred MB in memory.

Validation: a bad row raises :class:`DataError` naming the source, the row (index and id), the column and the reason.
With ``skip_invalid=True`` bad rows are skipped instead, never silently: a warning logs the counts per reason, and
the counts come back through the ``report`` dict argument (see :func:`load_source`). Source-level problems (missing
column, unknown kind, unreadable source, no valid rows at all) always raise.
Duplicate ids are made unique deterministically, in source order: the n-th repeat of ``X`` becomes ``X~n`` (n ≥ 2),
counted in ``report["renamed_ids"]`` and logged.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from wise_rl import frames
from wise_rl.data.geometry import inscribed_circle_points, mask_bbox, target_pixels
from wise_rl.data.images import ImageError, load_image, needs_conversion, source_bytes
from wise_rl.data.schema import IGNORE_INDEX, as_mask_array, sample_features

logger = logging.getLogger(__name__)

KINDS = ("refcocog", "reasonseg", "lisa", "schema")
_KIND_ALIASES = {"shapeworld": "schema", "refcocog_840": "refcocog", "lisa_folder": "lisa"}
REQUIRED_COLUMNS = {
    "refcocog": ("id", "problem", "solution", "image", "img_height", "img_width"),
    "reasonseg": ("image", "text", "mask", "image_id", "ann_id", "img_height", "img_width"),
    "schema": ("id", "image", "query", "image_size", "model_size", "gt_bbox", "gt_points"),
}
_OPTIONAL_COLUMNS = {"schema": ("gt_mask", "detailed", "concise", "source", "original_mask")}
_SPLIT_NAMES = ("train", "test", "validation", "val", "dev", "eval")
_DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
_META_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}
_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_SOLUTION_RE = re.compile(
    rf"<box>\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*</box>\s*"
    rf"<points>\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*</points>",
    re.DOTALL,
)
_PROGRESS_MIN_ROWS = 1000
_CHUNK_ROWS = 256


class DataError(ValueError):
    """A bad source or row: names the source, the row (index and id), the column and the reason.

    Attributes: ``source`` (path or name), ``row`` (index in the source, None for a source-level problem),
    ``row_id`` (the row's id when known), ``column``, ``reason`` (human text), ``code`` (short reason key, the one
    ``report["skipped"]`` counts), ``kind`` (source kind when known).
    """

    def __init__(self, source: Any, row: Any, column: str | None, reason: str, *, code: str = "invalid",
                 kind: str | None = None, row_id: Any = None):
        self.source = str(source)
        self.row = row
        self.row_id = row_id
        self.column = column
        self.reason = reason
        self.code = code
        self.kind = kind
        where = f"{kind} rows {self.source!r}" if kind else f"source {self.source!r}"
        if row is not None:
            where += f", row {row}"
            if row_id is not None:
                where += f" (id {str(row_id)!r})"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")


class _RowError(Exception):
    """Raised inside row conversion; turned into a DataError with the source / row context attached."""

    def __init__(self, column: str | None, code: str, reason: str):
        super().__init__(reason)
        self.column, self.code, self.reason = column, code, reason


# ---------------------------------------------------------------------------------------------------------------
# Public entry point


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
        kind: force the source kind (``refcocog``, ``reasonseg``, ``lisa``, ``schema``/``shapeworld``).
        report: optional dict filled in place with ``source``, ``kind``, ``rows_read`` (source rows / LISA files
            visited), ``rows_out``, ``skipped`` (reason code → count), ``skipped_examples`` (reason code → up to 5
            error messages) and ``renamed_ids`` (duplicate ids made unique).
        lisa_texts: LISA folders only: ``first`` (LISA's evaluation: one sample per image, its first text, id =
            the image name) or ``all`` (one sample per text, ids ``NAME#k``).
    """
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

    bad_lines: list[DataError] | None = [] if skip_invalid else None  # unparseable json lines, when skipped
    label, dataset, lisa_dir, base_dir = _resolve(src, split, kind, bad_lines)
    if lisa_dir is not None:
        kind, extras = "lisa", []
        from wise_rl.data.lisa import lisa_rows

        rows, n_in = lisa_rows(lisa_dir, model_size or frames.DEFAULT_MODEL_SIZE, with_original_mask, label,
                               lisa_texts)
    else:
        kind = kind or _detect_kind(dataset, label)
        if kind == "lisa":
            raise DataError(label, None, None, "kind='lisa' needs a folder of NAME.jpg + NAME.json files",
                            code="bad_source")
        _check_columns(dataset, kind, label)
        extras = _extra_columns(dataset, kind, label, model_size)
        rows, n_in = _dataset_rows(dataset, kind, label, model_size, with_original_mask, base_dir, extras)

    stats = {"source": label, "kind": kind, "rows_read": 0, "rows_out": 0, "skipped": Counter(),
             "skipped_examples": {}, "renamed_ids": 0}
    features = sample_features(with_original_mask)
    for column in extras:
        features[column] = dataset.features[column]
    columns = list(features)
    chunks: list[Dataset] = []
    buffer: dict[str, list] = {c: [] for c in columns}
    seen: dict[str, int] = {}
    used: set[str] = set()
    for item in bad_lines or []:  # counted like any other skipped row
        stats["rows_read"] += 1
        stats["skipped"][item.code] += 1
        examples = stats["skipped_examples"].setdefault(item.code, [])
        if len(examples) < 5:
            examples.append(str(item))

    progress = tqdm(total=n_in, desc=f"load {kind}", unit="row", disable=n_in < _PROGRESS_MIN_ROWS)
    try:
        for item in rows:
            progress.update(1)
            stats["rows_read"] += 1
            if isinstance(item, DataError):
                if not skip_invalid:
                    raise item
                stats["skipped"][item.code] += 1
                stats["skipped_examples"].setdefault(item.code, [])
                if len(stats["skipped_examples"][item.code]) < 5:
                    stats["skipped_examples"][item.code].append(str(item))
                continue
            for out in item:
                out["id"] = _unique_id(out["id"], seen, used, stats)
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
    n_skipped = sum(stats["skipped"].values())
    if n_skipped:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(stats["skipped"].items()))
        logger.warning("%s rows %r: skipped %d invalid of %d (%s)", kind, label, n_skipped, stats["rows_read"],
                       counts)
    if stats["renamed_ids"]:
        logger.warning("%s rows %r: %d duplicate ids renamed to ID~n", kind, label, stats["renamed_ids"])
    if not chunks:
        detail = f" ({n_skipped} skipped: {dict(stats['skipped'])})" if n_skipped else ""
        raise DataError(label, None, None, f"no valid rows{detail}", code="no_rows", kind=kind)
    return chunks[0] if len(chunks) == 1 else concatenate_datasets(chunks)


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


# ---------------------------------------------------------------------------------------------------------------
# Source resolution


def _resolve(src: Any, split: str | None, kind: str | None, bad_lines: list | None = None):
    """→ (label, dataset or None, lisa folder or None, base folder for relative image paths or None).
    ``bad_lines``: see :func:`_load_files`."""
    if isinstance(src, DatasetDict):
        return "<DatasetDict>", _pick_split(src, split, "<DatasetDict>"), None, None
    if isinstance(src, Dataset):
        return "<Dataset>", src, None, None
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(f"src must be a path, a hub name or a datasets.Dataset, got {type(src).__name__}")
    path = Path(src).expanduser()
    label = str(src)
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            try:
                loaded = load_from_disk(str(path))
            except Exception as exc:  # noqa: BLE001 - report any failure with the source named
                raise DataError(label, None, None, f"cannot read save_to_disk folder: {exc}",
                                code="bad_source") from exc
            if isinstance(loaded, DatasetDict):
                return label, _pick_split(loaded, split, label), None, path
            return label, loaded, None, path
        if kind in (None, "lisa") and _is_lisa_dir(path):
            return label, None, path, path
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix in _DATA_SUFFIXES and p.name not in _META_FILES
        )
        if not files:
            raise DataError(label, None, None, "folder holds no save_to_disk dataset, no parquet/jsonl/json files "
                            "and no LISA NAME.jpg + NAME.json pairs", code="bad_source")
        return label, _load_files(_pick_file_split(files, split, label), label, bad_lines), None, path
    if path.is_file():
        if path.suffix not in _DATA_SUFFIXES:
            raise DataError(label, None, None, f"unsupported file type {path.suffix!r} (parquet, jsonl or json)",
                            code="bad_source")
        return label, _load_files([path], label, bad_lines), None, path.parent
    looks_like_path = (
        str(src).startswith((".", "/", "~")) or str(src).endswith(_DATA_SUFFIXES) or str(src).count("/") > 1
        or os.sep in str(src) and os.sep != "/"
    )
    if looks_like_path:
        raise DataError(label, None, None, "no such file or folder", code="bad_source")
    return label, _load_hub(str(src), split), None, None


def _pick_split(dd: DatasetDict, split: str | None, label: str) -> Dataset:
    names = list(dd.keys())
    if split is not None:
        if split not in dd:
            raise DataError(label, None, None, f"no split {split!r}; splits: {', '.join(names)}", code="bad_split")
        return dd[split]
    if "test" in dd:
        return dd["test"]
    if len(names) == 1:
        return dd[names[0]]
    raise DataError(label, None, None, f"several splits and no 'test'; pass split= one of {', '.join(names)}",
                    code="bad_split")


def _pick_file_split(files: list[Path], split: str | None, label: str) -> list[Path]:
    groups: dict[str, list[Path]] = {}
    for f in files:
        prefix = f.stem.split("-")[0].split(".")[0]
        groups.setdefault(prefix if prefix in _SPLIT_NAMES else "", []).append(f)
    if "" in groups:  # names that are not split names: the folder is one split
        if split is not None:
            logger.warning("source %r: files are not named by split; ignoring split=%r", label, split)
        return files
    return _pick_split(groups, split, label)  # type: ignore[arg-type]  # a dict of lists works the same way


def _json_line_errors(path: Path) -> list[tuple[int, str]]:
    """``(line number, reason)`` of each non-empty line of a JSON-lines file that is not a JSON object (a truncated
    file ends with one). A ``.json`` file holding one JSON document has none."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        try:
            json.loads(text)
            return []
        except json.JSONDecodeError:
            pass  # maybe JSON lines under a .json name
    errors = []
    for k, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                errors.append((k, "not a JSON object"))
        except json.JSONDecodeError as exc:
            errors.append((k, f"not valid JSON ({exc.msg} at column {exc.colno}; a truncated file?)"))
    return errors


def _load_files(files: list[Path], label: str, bad_lines: list | None = None) -> Dataset:
    """The rows of parquet or json/jsonl ``files``. A json line that does not parse raises a :class:`DataError`
    naming the file and line; with ``bad_lines`` (a list, when the caller skips invalid rows) each bad line is
    appended to it as a DataError (code ``bad_json_line``) and the other lines load."""
    suffixes = {f.suffix for f in files}
    try:
        if suffixes == {".parquet"}:
            return Dataset.from_parquet([str(f) for f in files])
        if suffixes <= {".jsonl", ".json"}:
            return Dataset.from_json([str(f) for f in files])
    except Exception as exc:  # noqa: BLE001
        if suffixes <= {".jsonl", ".json"}:
            found = [(f, k, why) for f in files for k, why in _json_line_errors(f)]
            if found and bad_lines is None:
                f, k, why = found[0]
                more = f" ({len(found) - 1} more bad lines)" if len(found) > 1 else ""
                raise DataError(str(f), f"line {k}", None, why + more + "; skip_invalid skips and counts them",
                                code="bad_json_line") from exc
            if found:
                return _load_json_without(files, found, label, bad_lines)
        raise DataError(label, None, None, f"cannot read data files: {exc}", code="bad_source") from exc
    raise DataError(label, None, None, f"mixed file types {sorted(suffixes)}: use one of parquet or jsonl/json",
                    code="bad_source")


def _load_json_without(files: list[Path], found: list, label: str, bad_lines: list) -> Dataset:
    """Load json ``files`` leaving out the ``found`` bad lines (copies in a temporary folder), recording each."""
    import tempfile

    drop: dict[Path, set[int]] = {}
    for f, k, why in found:
        drop.setdefault(f, set()).add(k)
        bad_lines.append(DataError(str(f), f"line {k}", None, why, code="bad_json_line"))
    with tempfile.TemporaryDirectory(prefix="wise-rl-json-") as tmp:
        paths = []
        for i, f in enumerate(files):
            if f in drop:
                lines = f.read_text(encoding="utf-8", errors="replace").split("\n")
                kept = [line for k, line in enumerate(lines, start=1) if k not in drop[f]]
                f = Path(tmp, f"{i}.jsonl")
                f.write_text("\n".join(kept), encoding="utf-8")
            paths.append(str(f))
        try:
            return Dataset.from_json(paths, keep_in_memory=True)
        except Exception as exc:  # noqa: BLE001
            raise DataError(label, None, None, f"cannot read data files: {exc}", code="bad_source") from exc


def _load_hub(name: str, split: str | None) -> Dataset:
    import datasets

    offline = bool(datasets.config.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").lower() in (
        "1", "true", "yes", "on")
    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001
        why = "not found locally and HF_HUB_OFFLINE is set" if offline else "could not be loaded from the hub"
        raise DataError(name, None, None, f"hub dataset {why} ({type(exc).__name__}: {exc})",
                        code="bad_source") from exc
    if isinstance(loaded, DatasetDict):
        return _pick_split(loaded, split, name)
    return loaded


def _is_lisa_dir(path: Path) -> bool:
    for js in path.glob("*.json"):
        if js.name not in _META_FILES and any(js.with_suffix(s).exists() for s in _IMAGE_SUFFIXES):
            return True
    return False


def _detect_kind(ds: Dataset, label: str) -> str:
    cols = set(ds.column_names)
    if {"gt_bbox", "query"} <= cols:
        return "schema"
    if cols & {"solution", "problem"}:
        return "refcocog"
    if cols & {"mask", "ann_id"}:
        return "reasonseg"
    raise DataError(label, None, None, f"cannot tell the source kind from columns {sorted(cols)}; expected "
                    f"refCOCOg ({', '.join(REQUIRED_COLUMNS['refcocog'])}), ReasonSeg "
                    f"({', '.join(REQUIRED_COLUMNS['reasonseg'])}) or the sample schema; pass kind=",
                    code="unknown_kind")


def _extra_columns(ds: Dataset, kind: str, label: str, model_size: int | None) -> list[str]:
    """Columns beyond the sample schema that rows already in the schema carry along (ShapeWorld's ``family``,
    ``target_index``, ``shape_boxes``): kept unchanged, unless the rows are rescaled to another ``model_size`` —
    they may hold model-frame coordinates, so they are then dropped with a warning rather than left stale."""
    if kind != "schema":
        return []
    known = set(sample_features(with_original_mask=True))
    extras = [c for c in ds.column_names if c not in known]
    if extras and model_size is not None and set(ds.unique("model_size")) != {model_size}:
        logger.warning("%s rows %r: rescaled to model_size %d; dropping extra columns %s (not rescalable)",
                       kind, label, model_size, extras)
        return []
    return extras


def _check_columns(ds: Dataset, kind: str, label: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in ds.column_names]
    if missing:
        raise DataError(label, None, missing[0], f"missing column(s) {missing}; columns present: "
                        f"{sorted(ds.column_names)}", code="missing_column", kind=kind)


# ---------------------------------------------------------------------------------------------------------------
# Row conversion


def _dataset_rows(ds: Dataset, kind: str, label: str, model_size: int | None, with_original_mask: bool,
                  base_dir: Path | None, extras: list[str]) -> tuple[Iterator, int]:
    needed = list(REQUIRED_COLUMNS[kind]) + [c for c in _OPTIONAL_COLUMNS.get(kind, ()) if c in ds.column_names]
    needed += extras
    convert = {"refcocog": _refcocog_row, "reasonseg": _reasonseg_row, "schema": _schema_row}[kind]
    mask_column = {"reasonseg": "mask"}.get(kind)
    batch_size = 8 if kind == "reasonseg" else 64

    def generate():
        arrow = ds.select_columns(needed).with_format("arrow")
        index = 0
        for table in arrow.iter(batch_size=batch_size):
            columns = {}
            for name in table.column_names:
                if name == mask_column:
                    columns[name] = table.column(name).combine_chunks()
                else:
                    columns[name] = table.column(name).to_pylist()
            for i in range(table.num_rows):
                row = {n: (_arrow_mask(v, i) if n == mask_column else v[i]) for n, v in columns.items()}
                row_id = _row_id(kind, row)
                try:
                    converted = convert(row, model_size, with_original_mask, base_dir)
                    for out in converted:
                        out.update({c: row[c] for c in extras})
                    yield converted
                except _RowError as err:
                    yield DataError(label, index, err.column, err.reason, code=err.code, kind=kind, row_id=row_id)
                index += 1

    return generate(), ds.num_rows


def _row_id(kind: str, row: dict) -> str | None:
    if kind == "reasonseg":
        return f"{row.get('image_id')}_{row.get('ann_id')}"
    value = row.get("id")
    return None if value is None else str(value)


class _MaskValue:
    """A mask read from arrow: an array, or an error found while reading it (raised during conversion)."""

    def __init__(self, array: np.ndarray | None = None, error: str | None = None, raw: Any = None):
        self.array, self.error, self.raw = array, error, raw


def _arrow_mask(col: pa.Array, i: int) -> _MaskValue:
    """Read row ``i`` of a mask column without building Python lists (ReasonSeg masks are large)."""
    scalar = col[i]
    if not scalar.is_valid:
        return _MaskValue()
    typ = col.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        rows = scalar.values
        if not (pa.types.is_list(rows.type) or pa.types.is_large_list(rows.type)):
            return _MaskValue(error=f"mask must be 2-D (H×W nested lists), got a flat list of {len(rows)}")
        height = len(rows)
        if height == 0:
            return _MaskValue(np.zeros((0, 0), dtype=np.uint8))
        if rows.null_count:
            return _MaskValue(error="mask has null rows")
        lengths = np.asarray(rows.value_lengths().to_numpy(zero_copy_only=False))
        if (lengths != lengths[0]).any():
            return _MaskValue(error=f"mask rows have different lengths ({lengths.min()}..{lengths.max()})")
        flat = rows.flatten()
        if flat.null_count:
            return _MaskValue(error="mask has null values")
        values = np.asarray(flat.to_numpy(zero_copy_only=False))
        return _MaskValue(values.reshape(height, int(lengths[0])))
    return _MaskValue(raw=scalar.as_py())  # an Image struct, a path or something else: decoded later


def _mask_from_value(value: Any, column: str, base_dir: Path | None) -> np.ndarray | None:
    if isinstance(value, _MaskValue):
        if value.error:
            raise _RowError(column, "bad_mask", value.error)
        if value.array is not None:
            return _normalise_mask(value.array, column)
        value = value.raw
    if value is None:
        return None
    if isinstance(value, (dict, str, bytes)):
        image, _, _ = _open_image(value, column, base_dir, as_shown=False)
        return _normalise_mask(as_mask_array(image), column)
    try:
        return _normalise_mask(as_mask_array(value), column)
    except (ValueError, TypeError) as exc:
        raise _RowError(column, "bad_mask", f"unreadable mask: {exc}") from exc


def _normalise_mask(arr: np.ndarray, column: str) -> np.ndarray:
    """bools / ints → uint8 with 1 = target, 0 = background, 255 = ignore (any other positive value is target)."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise _RowError(column, "bad_mask", f"mask must be 2-D (H×W), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number):
        raise _RowError(column, "bad_mask", f"mask values must be bools or numbers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise _RowError(column, "bad_mask", f"mask values outside 0..255 ({arr.min()}..{arr.max()})")
    out = np.where(arr == IGNORE_INDEX, IGNORE_INDEX, (arr > 0).astype(np.uint8))
    return out.astype(np.uint8)


def _open_image(value: Any, column: str, base_dir: Path | None, passthrough_size: int | None = None,
                as_shown: bool = True) -> tuple[Image.Image, bytes | None, str | None]:
    """An image cell (Image struct dict, path, bytes or PIL) → (PIL image, raw bytes, format).

    ``as_shown`` (images, not masks): the image as a viewer shows it (``wise_rl.data.images.load_image``: EXIF
    orientation applied, RGB); raw bytes come back only when they already are that image.

    The image is fully decoded (a corrupt or truncated one raises), except one that ``_model_image`` will pass
    through untouched (``passthrough_size``² RGB): its pixels are never used here, so it is checked more cheaply —
    a JPEG is decoded at 1/8 scale (``draft``: every entropy-coded block is still read), anything else through
    ``verify()`` (PNG chunk CRCs).
    """
    if isinstance(value, Image.Image):
        return (load_image(value) if as_shown else value), None, value.format
    try:
        raw, path = source_bytes(value, base_dir)
    except ImageError as exc:
        raise _RowError(column, exc.code, str(exc)) from exc
    try:
        image = Image.open(io.BytesIO(raw))
        fmt = image.format
        if (passthrough_size is not None and image.size == (passthrough_size,) * 2
                and not needs_conversion(image)):
            probe = Image.open(io.BytesIO(raw))
            if fmt == "JPEG":
                probe.draft("RGB", (max(1, probe.width // 8), max(1, probe.height // 8)))
                probe.load()
            else:
                probe.verify()
        else:
            image.load()
    except UnidentifiedImageError as exc:
        where = f"file {str(path)!r}" if path else f"{len(raw)} bytes"
        raise _RowError(column, "unreadable_image", f"unreadable image: {where} in no known image format") from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on truncated / corrupt data
        raise _RowError(column, "unreadable_image", f"unreadable image ({type(exc).__name__}: {exc})") from exc
    if image.width <= 0 or image.height <= 0:
        raise _RowError(column, "unreadable_image", f"image has size {image.size}")
    if as_shown and needs_conversion(image):
        try:
            image, raw = load_image(image), None  # the stored bytes are not what a viewer shows
        except (ImageError, OSError, ValueError) as exc:
            raise _RowError(column, "unreadable_image", f"cannot convert the image to RGB: {exc}") from exc
    return image, raw, fmt


def _encode_png(mask: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _model_image(image: Image.Image, raw: bytes | None, fmt: str | None, size: int) -> dict:
    """The S×S RGB model-frame image, encoded (raw bytes reused when already S×S RGB)."""
    if raw is not None and image.size == (size, size) and image.mode == "RGB":
        return {"bytes": raw, "path": None}
    out = frames.image_to_model(image, size)
    buf = io.BytesIO()
    if fmt == "JPEG":
        out.save(buf, format="JPEG", quality=95)
    else:
        out.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _number(value: Any, column: str) -> float:
    if value is None:
        raise _RowError(column, "missing_value", "missing value")
    if isinstance(value, bool):
        raise _RowError(column, "bad_value", f"expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise _RowError(column, "bad_value", f"expected a number, got {value!r}") from exc
    if not math.isfinite(out):
        raise _RowError(column, "bad_value", f"expected a finite number, got {value!r}")
    return out


def _positive_int(value: Any, column: str) -> int:
    out = _number(value, column)
    if out <= 0 or out != int(out):
        raise _RowError(column, "bad_value", f"expected a positive integer size, got {value!r}")
    return int(out)


def _query(value: Any, column: str) -> str:
    if value is None:
        raise _RowError(column, "missing_value", "missing query")
    if not isinstance(value, str):
        raise _RowError(column, "bad_value", f"query must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _RowError(column, "empty_query", "empty query")
    return value.strip()


def _queries(value: Any, column: str) -> list[tuple[str, str]]:
    """``text`` as a string → [("", q)]; as a list → [("#k", q_k)]. Every query must be non-empty."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise _RowError(column, "empty_query", "empty list of queries")
        return [(f"#{k}", _query(q, column)) for k, q in enumerate(value)]
    return [("", _query(value, column))]


def _check_box(bbox: list[float], points: list[list[float]], width: float, height: float, bbox_column: str,
               points_column: str) -> None:
    """Pixel-inclusive box inside ``[0, W] × [0, H]`` (the edge value W is tolerated) with x1 ≤ x2, y1 ≤ y2."""
    x1, y1, x2, y2 = bbox
    if x2 < x1 or y2 < y1:
        raise _RowError(bbox_column, "degenerate_bbox", f"degenerate bbox {bbox} (needs x1 <= x2 and y1 <= y2)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise _RowError(bbox_column, "bbox_outside_image",
                        f"bbox {bbox} outside the {width:g}×{height:g} image")
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise _RowError(points_column, "points_outside_image",
                            f"point {[x, y]} outside the {width:g}×{height:g} image")


def _refcocog_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None) -> list:
    size = model_size or frames.DEFAULT_MODEL_SIZE
    if row["id"] is None or not str(row["id"]).strip():
        raise _RowError("id", "missing_value", "missing id")
    query = _query(row["problem"], "problem")
    solution = row["solution"]
    if not isinstance(solution, str):
        raise _RowError("solution", "missing_value" if solution is None else "unparsable_solution",
                        f"unparsable solution {solution!r}")
    match = _SOLUTION_RE.fullmatch(solution.strip())
    if match is None:
        shown = solution if len(solution) <= 120 else solution[:117] + "..."
        raise _RowError("solution", "unparsable_solution", f"unparsable solution {shown!r}")
    v = [float(g) for g in match.groups()]
    bbox, points = v[:4], [v[4:6], v[6:8]]
    width = _positive_int(row["img_width"], "img_width")
    height = _positive_int(row["img_height"], "img_height")
    # The frame check needs only the size; a stored image already size² is passed through undecoded.
    image, raw, fmt = _open_image(row["image"], "image", base_dir, passthrough_size=size)
    frame = image.size  # the solution lives in the stored image's frame (840×840 in refCOCOg_2k_840)
    _check_box(bbox, points, frame[0], frame[1], "solution", "solution")
    out = {
        "id": str(row["id"]),
        "image": _model_image(image, raw, fmt, size),
        "query": query,
        "image_size": [width, height],
        "model_size": size,
        "gt_bbox": frames.bbox_to_model(bbox, frame, size),
        "gt_points": frames.points_to_model(points, frame, size),
        "gt_mask": None,
        "detailed": None,
        "concise": None,
        "source": "refcocog",
    }
    if with_original_mask:
        out["original_mask"] = None
    return [out]


def _mask_ground_truth(mask: np.ndarray, width: int, height: int, size: int, column: str) -> dict:
    """Original-frame mask → model-frame bbox, points, gt_mask (derived on the original, mapped with frames)."""
    if not target_pixels(mask).any():
        raise _RowError(column, "empty_mask", "empty mask: no target pixels")
    image_size = (width, height)
    bbox = mask_bbox(mask)
    return {
        "gt_bbox": frames.bbox_to_model(bbox, image_size, size),
        "gt_points": frames.points_to_model(inscribed_circle_points(mask), image_size, size),
        "gt_mask": _encode_png(frames.mask_to_model(mask, size)),
    }


def _reasonseg_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None) -> list:
    size = model_size or frames.DEFAULT_MODEL_SIZE
    for column in ("image_id", "ann_id"):
        if row[column] is None or not str(row[column]).strip():
            raise _RowError(column, "missing_value", f"missing {column}")
    base_id = f"{row['image_id']}_{row['ann_id']}"
    queries = _queries(row["text"], "text")
    width = _positive_int(row["img_width"], "img_width")
    height = _positive_int(row["img_height"], "img_height")
    image, raw, fmt = _open_image(row["image"], "image", base_dir)
    if image.size != (width, height):
        raise _RowError("img_width", "image_size_mismatch",
                        f"img_width×img_height {width}×{height} differs from the image's {image.width}×"
                        f"{image.height}")
    mask = _mask_from_value(row["mask"], "mask", base_dir)
    if mask is None:
        raise _RowError("mask", "missing_value", "missing mask")
    if mask.shape != (height, width):
        raise _RowError("mask", "mask_shape_mismatch",
                        f"mask is {mask.shape[0]}×{mask.shape[1]} (H×W) but the image is {height}×{width}")
    truth = _mask_ground_truth(mask, width, height, size, "mask")
    model_image = _model_image(image, raw, fmt, size)
    original = _encode_png(mask) if with_original_mask else None
    rows = []
    for suffix, query in queries:
        out = {"id": base_id + suffix, "image": model_image, "query": query, "image_size": [width, height],
               "model_size": size, **truth, "detailed": None, "concise": None, "source": "reasonseg"}
        if with_original_mask:
            out["original_mask"] = original
        rows.append(out)
    return rows


def _schema_row(row: dict, model_size: int | None, with_original_mask: bool, base_dir: Path | None) -> list:
    if row["id"] is None or not str(row["id"]).strip():
        raise _RowError("id", "missing_value", "missing id")
    query = _query(row["query"], "query")
    own = _positive_int(row["model_size"], "model_size")
    size = model_size or own
    image_size = row["image_size"]
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise _RowError("image_size", "bad_value", f"image_size must be [W, H], got {image_size!r}")
    width, height = (_positive_int(v, "image_size") for v in image_size)
    image, raw, fmt = _open_image(row["image"], "image", base_dir, passthrough_size=size)
    if image.size != (own, own):
        raise _RowError("image", "image_size_mismatch",
                        f"image is {image.width}×{image.height}, expected model_size² = {own}×{own}")
    bbox, points = row["gt_bbox"], row["gt_points"]
    mask = _mask_from_value(row.get("gt_mask"), "gt_mask", base_dir)
    if mask is not None and mask.shape != (own, own):
        raise _RowError("gt_mask", "mask_shape_mismatch",
                        f"gt_mask is {mask.shape[1]}×{mask.shape[0]}, expected {own}×{own}")
    if bbox is None and points is None and mask is not None and not target_pixels(mask).any():
        pass  # a no-object sample (LISA): an empty target, nothing to box
    else:
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise _RowError("gt_bbox", "bad_value", f"gt_bbox must be [x1, y1, x2, y2], got {bbox!r}")
        bbox = [_number(v, "gt_bbox") for v in bbox]
        if not isinstance(points, (list, tuple)) or len(points) != 2 or any(
                not isinstance(p, (list, tuple)) or len(p) != 2 for p in points):
            raise _RowError("gt_points", "bad_value", f"gt_points must be [[x, y], [x, y]], got {points!r}")
        points = [[_number(v, "gt_points") for v in p] for p in points]
        _check_box(bbox, points, own, own, "gt_bbox", "gt_points")
        if mask is not None and not target_pixels(mask).any():
            raise _RowError("gt_mask", "empty_mask", "empty mask: no target pixels (but a gt_bbox)")
    frame = (own, own)
    out = {
        "id": str(row["id"]),
        "image": _model_image(image, raw, fmt, size),
        "query": query,
        "image_size": [width, height],
        "model_size": size,
        "gt_bbox": bbox if size == own or bbox is None else frames.bbox_to_model(bbox, frame, size),
        "gt_points": points if size == own or points is None else frames.points_to_model(points, frame, size),
        "gt_mask": None if mask is None else _encode_png(frames.mask_to_model(mask, size)),
        "detailed": row.get("detailed"),
        "concise": row.get("concise"),
        "source": row.get("source") or "schema",
    }
    if with_original_mask:
        original = _mask_from_value(row.get("original_mask"), "original_mask", base_dir)
        if original is not None and original.shape != (height, width):
            raise _RowError("original_mask", "mask_shape_mismatch",
                            f"original_mask is {original.shape[1]}×{original.shape[0]}, expected image_size "
                            f"{width}×{height}")
        if original is None and mask is not None:
            original = frames.mask_to_original(mask, (width, height))
        out["original_mask"] = None if original is None else _encode_png(original)
    return [out]


__all__ = ["DataError", "KINDS", "REQUIRED_COLUMNS", "load_source"]
