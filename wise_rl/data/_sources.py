"""Where rows come from: a ``datasets`` object, a ``save_to_disk`` folder, parquet / jsonl / json files or a folder
of them (files named ``train-*.parquet``, ``test.jsonl`` … are grouped into splits by the name before the first
``-``, when every name starts with a split name), a LISA folder, or a hub name (``datasets.load_dataset``; offline
here, the failure says so). A ``DatasetDict`` (or a split-grouped folder) gives ``split``; with ``split=None`` the
test split when present, else the only split, otherwise a :class:`DataError` naming the splits. A json/jsonl line
that does not parse names the file and line. Also the kind detection from the columns and the column checks.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_from_disk

from wise_rl.data._rowtools import (
    _IMAGE_SUFFIXES,
    _META_FILES,
    _OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    DataError,
)
from wise_rl.data.schema import sample_features

logger = logging.getLogger(__name__)

_SPLIT_NAMES = ("train", "test", "validation", "val", "dev", "eval")
_DATA_SUFFIXES = (".parquet", ".jsonl", ".json")


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


def _looks_local(name: str) -> str | None:
    """For a source that exists neither as a path nor on the hub: when the name reads as a local path (``./x``,
    ``/x``, ``a/b/c``, ``runs/x`` whose ``runs/`` exists), the nearest existing folder above it (``""`` for none or
    the working directory); None when it reads as a hub id (``org/name``)."""
    path = Path(name).expanduser()
    if not (name.startswith((".", "/", "~")) or len(path.parts) > 2 or (path.parent != Path(".") and path.parent.is_dir())):
        return None
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return "" if str(parent) in ("", ".") else str(parent)


def _load_hub(name: str, split: str | None) -> Dataset:
    import datasets

    offline = bool(datasets.config.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").lower() in (
        "1", "true", "yes", "on")
    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001
        parent = _looks_local(name)
        if parent is not None:  # a path with a typo, not a hub name: say so first
            where = f" in {parent!r}" if parent else ""
            raise DataError(name, None, None, f"no such file or folder{where} (read as a hub dataset name, it did "
                            f"not load either: {type(exc).__name__})", code="bad_source") from exc
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
    they may hold model-frame coordinates, so they are then dropped with a warning rather than left stale.
    Raw kinds (``refcocog``, ``reasonseg``) carry along every column they do not read, unchanged."""
    known = set(sample_features(with_original_mask=True))
    if kind in ("refcocog", "reasonseg"):
        read = set(REQUIRED_COLUMNS[kind]) | set(_OPTIONAL_COLUMNS[kind])
        return [c for c in ds.column_names if c not in known and c not in read]
    if kind != "schema":
        return []
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
